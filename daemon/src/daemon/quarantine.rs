//! Quarantine at admission: a verified `deploy` of a store path whose last
//! deploy here ended `failed` or `rolled_back` within `quarantine_s` is
//! refused unless it says `retry_failed` (docs/src/tutorial/4-safety.md).
//! The refusal comes before the nonce is recorded: the same request signed
//! again with `retry_failed` goes through.

use deployd_protocol::api::QuarantinedPath;
use deployd_protocol::StorePath;

use super::{Daemon, Records};
use crate::clock::now_ms;

/// Why a deploy is refused: the quarantine its store path is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Quarantined {
    /// The quarantine.
    pub path: QuarantinedPath,
    /// The sentence for the client, as of the refusal.
    message: String,
}

impl Daemon {
    /// The store paths quarantined now, newest ending first (status).
    pub fn quarantined(&self) -> Vec<QuarantinedPath> {
        let quarantine_s = self.config().file.quarantine_s;
        self.records()
            .store
            .quarantine()
            .list(now_ms(), quarantine_s)
    }

    /// Refuses a deploy of `store_path` that is quarantined, unless the
    /// request says `retry_failed`.
    pub(super) fn check_quarantine(
        &self,
        records: &Records,
        store_path: &StorePath,
        retry_failed: bool,
    ) -> Result<(), Quarantined> {
        if retry_failed {
            return Ok(());
        }
        let quarantine_s = self.config().file.quarantine_s;
        let now = now_ms();
        match records
            .store
            .quarantine()
            .find(store_path, now, quarantine_s)
        {
            Some(path) => Err(Quarantined {
                message: refusal_message(&path, now),
                path,
            }),
            None => Ok(()),
        }
    }
}

/// The sentence the client reads: which deploy ended how, when, and the
/// ways through.
fn refusal_message(quarantined: &QuarantinedPath, now_ms: u64) -> String {
    let how = match quarantined.state {
        deployd_protocol::api::DeployState::RolledBack => "rolled back",
        _ => "failed",
    };
    format!(
        "{} {how} here {} ago (deploy {}); it is quarantined for {} more: deploy another system, \
         or retry this one with retry_failed (push --retry-failed)",
        quarantined.store_path,
        duration(now_ms.saturating_sub(quarantined.ended_at_ms) / 1000),
        quarantined.deploy_id,
        duration(quarantined.until_ms.saturating_sub(now_ms).div_ceil(1000)),
    )
}

/// A duration in its two largest units: `3h 12m`, `4m 10s`, `9s`.
fn duration(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m {seconds}s"),
        _ => format!("{hours}h {minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use deployd_protocol::api::DeployState;

    use super::*;

    #[test]
    fn the_message_names_the_deploy_when_and_the_way_through() {
        let quarantined = QuarantinedPath {
            store_path: "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
                .parse()
                .expect("path"),
            deploy_id: "d-7".parse().expect("id"),
            state: DeployState::RolledBack,
            ended_at_ms: 1_000_000,
            until_ms: 1_000_000 + 86_400_000,
        };
        let message = refusal_message(&quarantined, 1_000_000 + 3_725_000);
        assert_eq!(
            message,
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x rolled back here 1h 2m ago (deploy d-7); \
             it is quarantined for 22h 57m more: deploy another system, or retry this one with \
             retry_failed (push --retry-failed)"
        );
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(250), "4m 10s");
    }
}
