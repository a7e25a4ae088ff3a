//! How each host ended, the summary (a table, or JSON with `--json`), and
//! the exit status (see [`crate::exit`]): 0 every host succeeded, 1 at least
//! one failed, rolled back, was unreachable or was not started (2, bad
//! usage or input, comes from errors before any host).

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
    /// Published to its channel (it pulls); its report of the deploy did
    /// not come within the wait (why, with the sequence).
    Published(String),
    /// Not started: hosts of an earlier batch failed (why, "after canary
    /// ankarana failed").
    NotStarted(String),
}

/// The word the progress display shows for a result.
pub fn phase(result: &Result) -> &'static str {
    match result {
        Result::Ended(record) => record.state.as_str(),
        Result::Sent(_) => "sent",
        Result::Published(_) => "published",
        Result::Refused(_) => "refused",
        Result::Unreachable(_) => "unreachable",
        Result::BuildFailed(_) => "build_failed",
        Result::NotStarted(_) => "not_started",
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
    /// Its batch (`canary`, `1`, `2`...) in a rollout in batches.
    pub batch: Option<String>,
}

impl HostResult {
    /// Whether this host counts as a success.
    pub fn succeeded(&self) -> bool {
        match &self.result {
            Result::Ended(record) => record.state == DeployState::Succeeded,
            Result::Sent(_) => true,
            // Not known to have deployed: in a rollout in batches it counts
            // against the budget, as a host that did not answer would.
            Result::Published(_)
            | Result::Refused(_)
            | Result::Unreachable(_)
            | Result::BuildFailed(_)
            | Result::NotStarted(_) => false,
        }
    }

    fn columns(&self) -> Vec<String> {
        let rev = self
            .rev
            .as_ref()
            .map_or("-".to_owned(), |rev| rev.as_str()[..12].to_owned());
        let reboot = match &self.result {
            Result::Ended(record) if record.reboot_required => "yes",
            Result::Ended(_) => "no",
            _ => "-",
        };
        let mut columns = vec![self.host.clone()];
        columns.extend(self.batch.clone());
        columns.extend([
            rev,
            phase(&self.result).to_owned(),
            table::age(self.elapsed.as_secs()),
            reboot.to_owned(),
        ]);
        columns
    }

    fn detail(&self) -> Option<String> {
        match &self.result {
            Result::Ended(record) => record
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.code, error.message)),
            Result::Sent(id) => Some(format!("deploy {id} sent; follow it with push log")),
            Result::Published(why)
            | Result::Refused(why)
            | Result::Unreachable(why)
            | Result::BuildFailed(why)
            | Result::NotStarted(why) => Some(why.clone()),
        }
    }
}

/// The summary table (with each host's batch, in a rollout in batches) and
/// the details of what went wrong.
pub fn summary(results: &[HostResult]) -> String {
    let rows: Vec<Vec<String>> = results.iter().map(HostResult::columns).collect();
    let headers: &[&str] = if results.iter().any(|result| result.batch.is_some()) {
        &["HOST", "BATCH", "REV", "RESULT", "TIME", "REBOOT"]
    } else {
        &["HOST", "REV", "RESULT", "TIME", "REBOOT"]
    };
    let mut text = table::render(headers, &rows);
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
    /// `rolled_back`), or `sent`, `refused`, `unreachable`, `build_failed`,
    /// `not_started`.
    pub result: &'static str,
    /// Its batch (`canary`, `1`, `2`...), only in a rollout in batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
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
            batch: host.batch.clone(),
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

/// 0 when every host succeeded, else 1 (a host not started included).
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
            batch: None,
        }
    }

    #[test]
    fn the_json_summary_has_one_object_per_host_with_every_field() {
        let unreachable = HostResult {
            host: "isalo".into(),
            rev: Some(REV.parse().expect("revision")),
            result: Result::Unreachable("http://isalo:9797/v1/status: connection refused".into()),
            elapsed: Duration::ZERO,
            batch: None,
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

    #[test]
    fn hosts_not_started_show_their_batch_and_why_and_fail_the_push() {
        let not_started = HostResult {
            host: "isalo".into(),
            rev: Some(REV.parse().expect("revision")),
            result: Result::NotStarted("after canary sambirano failed".into()),
            elapsed: Duration::ZERO,
            batch: Some("1".into()),
        };
        let canary = HostResult {
            batch: Some("canary".into()),
            ..ended()
        };
        let text = summary(&[canary.clone(), not_started.clone()]);
        assert!(text.starts_with("HOST"), "{text}");
        assert!(
            text.lines().next().expect("header").contains("BATCH"),
            "{text}"
        );
        assert!(text.contains("canary"), "{text}");
        assert!(text.contains("not_started"), "{text}");
        assert!(
            text.contains("isalo: after canary sambirano failed"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&json(&[not_started])).expect("JSON");
        assert_eq!(json[0]["result"], "not_started");
        assert_eq!(json[0]["batch"], "1");
        assert_eq!(json[0]["reason"], "after canary sambirano failed");
        assert_eq!(exit_code(&[canary]), ExitCode::from(1));
    }
}
