//! How each host ended, the summary (a table, or JSON with `--json`), and
//! the exit status (see [`crate::exit`]): 0 every host succeeded, 1 at least
//! one failed, rolled back or was unreachable (2, bad usage or input, comes
//! from errors before any host).

use std::process::ExitCode;
use std::time::Duration;

use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Revision;

use crate::table;

/// What happened on one host.
#[derive(Debug, Clone)]
pub enum Result {
    /// The deploy ended; its record.
    Ended(Box<DeployRecord>),
    /// Sent, not followed (`--no-wait`).
    Sent(String),
    /// The host refused the request.
    Refused(String),
    /// The host could not be reached.
    Unreachable(String),
    /// Its system failed to evaluate or build; nothing was sent.
    BuildFailed(String),
}

/// The word the progress display shows for a result.
pub fn phase(result: &Result) -> &'static str {
    match result {
        Result::Ended(record) => record.state.as_str(),
        Result::Sent(_) => "sent",
        Result::Refused(_) => "refused",
        Result::Unreachable(_) => "unreachable",
        Result::BuildFailed(_) => "build_failed",
    }
}

/// One host's line of the summary.
#[derive(Debug, Clone)]
pub struct HostResult {
    /// The host.
    pub host: String,
    /// The revision sent.
    pub rev: Option<Revision>,
    /// What happened.
    pub result: Result,
    /// How long it took.
    pub elapsed: Duration,
}

impl HostResult {
    /// Whether this host counts as a success.
    pub fn succeeded(&self) -> bool {
        match &self.result {
            Result::Ended(record) => record.state == DeployState::Succeeded,
            Result::Sent(_) => true,
            Result::Refused(_) | Result::Unreachable(_) | Result::BuildFailed(_) => false,
        }
    }

    fn columns(&self) -> Vec<String> {
        let rev = self
            .rev
            .as_ref()
            .map_or("-".to_owned(), |rev| rev.as_str()[..12].to_owned());
        let (result, reboot) = match &self.result {
            Result::Ended(record) => (
                record.state.to_string(),
                if record.reboot_required { "yes" } else { "no" }.to_owned(),
            ),
            Result::Sent(_) => ("sent".to_owned(), "-".to_owned()),
            Result::Refused(_) => ("refused".to_owned(), "-".to_owned()),
            Result::Unreachable(_) => ("unreachable".to_owned(), "-".to_owned()),
            Result::BuildFailed(_) => ("build_failed".to_owned(), "-".to_owned()),
        };
        vec![
            self.host.clone(),
            rev,
            result,
            table::age(self.elapsed.as_secs()),
            reboot,
        ]
    }

    fn detail(&self) -> Option<String> {
        match &self.result {
            Result::Ended(record) => record
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.code, error.message)),
            Result::Sent(id) => Some(format!("deploy {id} sent; follow it with push log")),
            Result::Refused(why) | Result::Unreachable(why) | Result::BuildFailed(why) => {
                Some(why.clone())
            }
        }
    }
}

/// The summary table and the details of what went wrong.
pub fn summary(results: &[HostResult]) -> String {
    let rows: Vec<Vec<String>> = results.iter().map(HostResult::columns).collect();
    let mut text = table::render(&["HOST", "REV", "RESULT", "TIME", "REBOOT"], &rows);
    for result in results {
        if let Some(detail) = result.detail().filter(|_| !result.succeeded()) {
            text.push_str(&format!(
                "{}: {}\n",
                result.host,
                crate::progress::printable(&detail)
            ));
        }
    }
    text
}

/// One host's line of `push --json`: what the table and its details say,
/// for scripts. Times are Unix milliseconds, from the host's record (none
/// when nothing was started there).
#[derive(Debug, serde::Serialize)]
pub struct JsonResult {
    /// The host.
    pub host: String,
    /// How it ended: a deploy's final state (`succeeded`, `failed`,
    /// `rolled_back`), or `sent`, `refused`, `unreachable`, `build_failed`.
    pub result: &'static str,
    /// Why it did not succeed (or, `sent`, what to do next).
    pub reason: Option<String>,
    /// The deploy started on it.
    pub deploy_id: Option<String>,
    /// The revision sent.
    pub revision: Option<String>,
    /// The system deployed.
    pub store_path: Option<String>,
    /// When the host took the deploy.
    pub started_at_ms: Option<u64>,
    /// When the deploy ended there.
    pub ended_at_ms: Option<u64>,
    /// How long push spent on the host, in seconds.
    pub duration_s: f64,
    /// Whether the host needs a reboot to run all of it.
    pub reboot_required: Option<bool>,
}

impl From<&HostResult> for JsonResult {
    fn from(host: &HostResult) -> JsonResult {
        let record = match &host.result {
            Result::Ended(record) => Some(record.as_ref()),
            _ => None,
        };
        let deploy_id = match &host.result {
            Result::Sent(id) => Some(id.clone()),
            _ => record.map(|record| record.deploy_id.to_string()),
        };
        let revision = host
            .rev
            .as_ref()
            .or(record.and_then(|record| record.rev.as_ref()));
        let reason = match &host.result {
            Result::Sent(_) => None,
            _ => host.detail(),
        };
        JsonResult {
            host: host.host.clone(),
            result: phase(&host.result),
            reason,
            deploy_id,
            revision: revision.map(|rev| rev.as_str().to_owned()),
            store_path: record.map(|record| record.store_path.to_string()),
            started_at_ms: record.map(|record| record.created_at_ms),
            ended_at_ms: record.and_then(|record| record.finished_at_ms),
            duration_s: host.elapsed.as_secs_f64(),
            reboot_required: record.map(|record| record.reboot_required),
        }
    }
}

/// The summary as JSON: an array of one [`JsonResult`] per host.
pub fn json(results: &[HostResult]) -> String {
    let hosts: Vec<JsonResult> = results.iter().map(JsonResult::from).collect();
    serde_json::to_string_pretty(&hosts).unwrap_or_else(|_| "[]".to_owned())
}

/// 0 when every host succeeded, else 1.
pub fn exit_code(results: &[HostResult]) -> ExitCode {
    crate::exit::hosts(!results.iter().all(HostResult::succeeded))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";
    const REV: &str = "0123456789abcdef0123456789abcdef01234567";

    fn ended() -> HostResult {
        let record: DeployRecord = serde_json::from_value(serde_json::json!({
            "deploy_id": "d-1", "host": "sambirano", "store_path": SYSTEM, "action": "switch",
            "flake": null, "rev": REV, "key": "ops-1", "issued_at": 1, "state": "rolled_back",
            "phases": [], "error": {"code": "switch_failed", "message": "nginx is down"},
            "previous_system": null, "reboot_required": false, "log_tail": [],
            "created_at_ms": 1000, "finished_at_ms": 4500,
        }))
        .expect("a record");
        HostResult {
            host: "sambirano".into(),
            rev: Some(REV.parse().expect("revision")),
            result: Result::Ended(Box::new(record)),
            elapsed: Duration::from_millis(3750),
        }
    }

    #[test]
    fn the_json_summary_has_one_object_per_host_with_every_field() {
        let unreachable = HostResult {
            host: "isalo".into(),
            rev: Some(REV.parse().expect("revision")),
            result: Result::Unreachable("http://isalo:9797/v1/status: connection refused".into()),
            elapsed: Duration::ZERO,
        };
        let json: serde_json::Value =
            serde_json::from_str(&json(&[ended(), unreachable])).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!([
                {
                    "host": "sambirano", "result": "rolled_back",
                    "reason": "switch_failed: nginx is down",
                    "deploy_id": "d-1", "revision": REV, "store_path": SYSTEM,
                    "started_at_ms": 1000, "ended_at_ms": 4500, "duration_s": 3.75,
                    "reboot_required": false,
                },
                {
                    "host": "isalo", "result": "unreachable",
                    "reason": "http://isalo:9797/v1/status: connection refused",
                    "deploy_id": null, "revision": REV, "store_path": null,
                    "started_at_ms": null, "ended_at_ms": null, "duration_s": 0.0,
                    "reboot_required": null,
                },
            ])
        );
        assert_eq!(exit_code(&[ended()]), ExitCode::from(1));
    }
}
