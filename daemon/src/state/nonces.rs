//! Seen nonces on disk, each kept until the message that carried it can no
//! longer be valid. The verifier records into a [`PendingNonce`]; the daemon
//! commits it to disk only once the request is accepted, so a request
//! refused for any reason (even `busy`) changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deployd_protocol::{Nonce, NonceStore, NonceStoreError, MAX_WINDOW_S};

use super::{read_json, write_json, StateError};

/// The nonces file.
#[derive(Debug)]
pub struct DiskNonceStore {
    path: PathBuf,
    keep_until: BTreeMap<String, u64>,
    /// When the nonces were lost (an unreadable file set aside), while a
    /// message seen before then may still be valid: any message issued
    /// until then may be a replay.
    lost_at: Option<u64>,
}

/// What `nonces-lost.json` says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NoncesLost {
    lost_at: u64,
}

impl DiskNonceStore {
    /// Loads `state_dir/nonces.json`. An unreadable one is set aside
    /// (`state_dir/unreadable/`), never fatal: from then on every message
    /// issued before that moment counts as replayed, until none of them can
    /// still be valid (`MAX_WINDOW_S`). Returns what went wrong, if anything.
    pub fn load(state_dir: &Path, now: u64) -> Result<(Self, Option<String>), StateError> {
        let path = state_dir.join("nonces.json");
        let lost_file = state_dir.join("nonces-lost.json");
        let mut problem = None;
        let keep_until = match read_json(&path) {
            Ok(nonces) => nonces.unwrap_or_default(),
            Err(error) => {
                write_json(&lost_file, &NoncesLost { lost_at: now })?;
                let aside = super::move_aside(state_dir, &path);
                problem = Some(format!(
                    "{error}; {aside}; messages issued before now are refused as replayed for {MAX_WINDOW_S} s"
                ));
                BTreeMap::new()
            }
        };
        let lost_at = read_json::<NoncesLost>(&lost_file)
            .ok()
            .flatten()
            .map(|lost| lost.lost_at)
            .filter(|lost_at| now <= lost_at + MAX_WINDOW_S);
        Ok((
            DiskNonceStore {
                path,
                keep_until,
                lost_at,
            },
            problem,
        ))
    }

    /// Whether a message issued at `issued_at` may have been seen with
    /// nonces that were lost.
    pub fn may_have_seen(&self, issued_at: u64) -> bool {
        self.lost_at.is_some_and(|lost_at| issued_at <= lost_at)
    }

    /// Whether `nonce` was recorded.
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.keep_until.contains_key(nonce.as_str())
    }

    /// Records `nonce` and writes the file, dropping nonces expired before `now`.
    pub fn commit(&mut self, pending: PendingNonce, now: u64) -> Result<(), StateError> {
        let Some((nonce, keep_until)) = pending.0 else {
            return Ok(());
        };
        let mut next = self.keep_until.clone();
        next.retain(|_, until| *until >= now);
        next.insert(nonce.to_string(), keep_until);
        // Memory follows the disk only once the disk has it.
        write_json(&self.path, &next)?;
        self.keep_until = next;
        Ok(())
    }

    /// How many nonces are kept.
    pub fn len(&self) -> usize {
        self.keep_until.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.keep_until.is_empty()
    }
}

/// A nonce the verifier accepted, not yet on disk.
#[derive(Debug, Default)]
pub struct PendingNonce(Option<(Nonce, u64)>);

/// The verifier's view: the disk store plus what this request would add.
pub struct VerifyingNonces<'a> {
    disk: &'a DiskNonceStore,
    pending: &'a mut PendingNonce,
}

impl DiskNonceStore {
    /// A nonce store for one verification, recording into `pending`.
    pub fn verifying<'a>(&'a self, pending: &'a mut PendingNonce) -> VerifyingNonces<'a> {
        VerifyingNonces {
            disk: self,
            pending,
        }
    }
}

impl NonceStore for VerifyingNonces<'_> {
    fn contains(&self, nonce: &Nonce) -> Result<bool, NonceStoreError> {
        let pending = self
            .pending
            .0
            .as_ref()
            .is_some_and(|(seen, _)| seen == nonce);
        Ok(pending || self.disk.contains(nonce))
    }

    fn insert(&mut self, nonce: &Nonce, keep_until: u64) -> Result<bool, NonceStoreError> {
        if self.contains(nonce)? {
            return Ok(false);
        }
        self.pending.0 = Some((nonce.clone(), keep_until));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_survive_a_restart_and_expire() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nonce = Nonce::generate().expect("random");
        let (mut store, problem) = DiskNonceStore::load(dir.path(), 0).expect("load");
        assert_eq!(problem, None);
        let mut pending = PendingNonce::default();
        assert!(store
            .verifying(&mut pending)
            .insert(&nonce, 1000)
            .expect("insert"));
        assert!(!store.contains(&nonce), "not on disk before commit");
        store.commit(pending, 0).expect("commit");
        let (mut reloaded, _) = DiskNonceStore::load(dir.path(), 0).expect("reload");
        assert!(reloaded.contains(&nonce));
        let mut again = PendingNonce::default();
        assert!(!reloaded
            .verifying(&mut again)
            .insert(&nonce, 1000)
            .expect("insert"));
        let other = Nonce::generate().expect("random");
        let mut later = PendingNonce::default();
        reloaded
            .verifying(&mut later)
            .insert(&other, 5000)
            .expect("insert");
        reloaded.commit(later, 2000).expect("commit");
        assert!(!reloaded.contains(&nonce), "expired nonce pruned");
        assert_eq!(reloaded.len(), 1);
    }
}
