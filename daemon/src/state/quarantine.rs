//! Quarantine: the store paths whose last deploy here ended `failed` or
//! `rolled_back`, so that a `deploy` of one of them within `quarantine_s` is
//! refused unless it says `retry_failed` (docs/src/tutorial/4-safety.md).
//!
//! The index lives in memory: rebuilt from the kept records at start,
//! updated as each deploy ends, bounded to [`MAX_QUARANTINED`] paths (the
//! oldest endings go first). A request looks up one entry; no record is read.
//!
//! What counts is the store path alone, whatever the action or
//! specialisation asked: a system that failed as `boot` fails the same as
//! `switch`. The newest ending of a path decides: a later success of it
//! (any action but `dry-activate`, which changes nothing) ends its
//! quarantine. A `prepare` counts for nothing either way: it fetches and
//! activates nothing, so its ending says nothing of the system (a fetch that
//! failed is the cache's trouble, to be tried again at once).

use std::collections::HashMap;

use deployd_protocol::api::{DeployRecord, DeployState, QuarantinedPath};
use deployd_protocol::{Action, DeployId, StorePath};

/// The most store paths the index holds.
pub const MAX_QUARANTINED: usize = 1024;

/// How a store path's last deploy here ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    deploy_id: DeployId,
    state: DeployState,
    ended_at_ms: u64,
}

/// The last bad ending of each store path.
#[derive(Debug, Default)]
pub struct QuarantineIndex {
    by_path: HashMap<StorePath, Ending>,
}

impl QuarantineIndex {
    /// Takes a deploy's record into account; one that has not ended, or
    /// ended before what the index knows of its store path, changes nothing.
    pub fn observe(&mut self, record: &DeployRecord) {
        let Some(ended_at_ms) = record.finished_at_ms.filter(|_| record.state.is_final()) else {
            return;
        };
        if record.action == Action::Prepare {
            return;
        }
        let newer = self
            .by_path
            .get(&record.store_path)
            .is_none_or(|known| known.ended_at_ms <= ended_at_ms);
        if !newer {
            return;
        }
        match record.state {
            DeployState::Failed | DeployState::RolledBack => {
                self.by_path.insert(
                    record.store_path.clone(),
                    Ending {
                        deploy_id: record.deploy_id.clone(),
                        state: record.state,
                        ended_at_ms,
                    },
                );
                self.bound();
            }
            DeployState::Succeeded if record.action != Action::DryActivate => {
                self.by_path.remove(&record.store_path);
            }
            _ => {}
        }
    }

    /// The quarantine of `store_path` at `now_ms`, if it is in one.
    /// `quarantine_s` 0 turns quarantine off.
    pub fn find(
        &self,
        store_path: &StorePath,
        now_ms: u64,
        quarantine_s: u64,
    ) -> Option<QuarantinedPath> {
        let ending = self.by_path.get(store_path)?;
        quarantined(store_path, ending, now_ms, quarantine_s)
    }

    /// Every store path in quarantine at `now_ms`, newest ending first.
    pub fn list(&self, now_ms: u64, quarantine_s: u64) -> Vec<QuarantinedPath> {
        let mut paths: Vec<QuarantinedPath> = self
            .by_path
            .iter()
            .filter_map(|(path, ending)| quarantined(path, ending, now_ms, quarantine_s))
            .collect();
        paths.sort_by_key(|path| std::cmp::Reverse(path.ended_at_ms));
        paths
    }

    /// Drops the oldest endings beyond [`MAX_QUARANTINED`].
    fn bound(&mut self) {
        while self.by_path.len() > MAX_QUARANTINED {
            let oldest = self
                .by_path
                .iter()
                .min_by_key(|(_, ending)| ending.ended_at_ms)
                .map(|(path, _)| path.clone());
            match oldest {
                Some(path) => self.by_path.remove(&path),
                None => break,
            };
        }
    }
}

/// The quarantine an ending puts its path in, while it lasts.
fn quarantined(
    store_path: &StorePath,
    ending: &Ending,
    now_ms: u64,
    quarantine_s: u64,
) -> Option<QuarantinedPath> {
    let until_ms = ending
        .ended_at_ms
        .saturating_add(quarantine_s.saturating_mul(1000));
    (quarantine_s > 0 && now_ms < until_ms).then(|| QuarantinedPath {
        store_path: store_path.clone(),
        deploy_id: ending.deploy_id.clone(),
        state: ending.state,
        ended_at_ms: ending.ended_at_ms,
        until_ms,
    })
}

#[cfg(test)]
mod tests;
