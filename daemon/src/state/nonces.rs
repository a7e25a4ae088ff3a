//! Seen nonces on disk, each kept until the message that carried it can no
//! longer be valid. The verifier records into a [`PendingNonce`]; the daemon
//! commits it to disk only once the request is accepted, so a request
//! refused for any reason (even `busy`) changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deployd_protocol::{Nonce, NonceStore, NonceStoreError};

use super::{read_json, write_json, StateError};

/// The nonces file.
#[derive(Debug)]
pub struct DiskNonceStore {
    path: PathBuf,
    keep_until: BTreeMap<String, u64>,
}

impl DiskNonceStore {
    /// Loads `state_dir/nonces.json`.
    pub fn load(path: PathBuf) -> Result<Self, StateError> {
        let keep_until = read_json(&path)?.unwrap_or_default();
        Ok(DiskNonceStore { path, keep_until })
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
        let path = dir.path().join("nonces.json");
        let nonce = Nonce::generate().expect("random");
        let mut store = DiskNonceStore::load(path.clone()).expect("load");
        let mut pending = PendingNonce::default();
        assert!(store
            .verifying(&mut pending)
            .insert(&nonce, 1000)
            .expect("insert"));
        assert!(!store.contains(&nonce), "not on disk before commit");
        store.commit(pending, 0).expect("commit");
        let mut reloaded = DiskNonceStore::load(path.clone()).expect("reload");
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
