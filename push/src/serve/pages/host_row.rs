//! One host as the fleet page's table shows it (and the head of its own
//! page): what `push status` shows, from the host's `/v1/status`, or for a
//! host that pulls, from its newest report to the channel.

use deployd_protocol::api::StatusResponse;
use deployd_protocol::HostReport;
use maud::{html, Markup};

use super::fleet::HostState;
use super::layout::{badge, short, system_name, time};
use crate::progress::printable;

/// What is shown of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRow {
    /// Its name in push.toml.
    pub name: String,
    /// The commit its running system was built from.
    pub rev: Option<String>,
    /// Its running system's store path.
    pub system: Option<String>,
    /// Its deploy running, or its last deploy's end; `unreachable`.
    pub state: String,
    /// That deploy.
    pub deploy_id: Option<String>,
    /// When it ended (Unix ms).
    pub ended_at_ms: Option<u64>,
    /// Whether it needs a reboot (unknown when it did not answer).
    pub reboot: Option<bool>,
    /// `yes`, `no`, or `pulls`.
    pub reachable: &'static str,
    /// Why: an error, quarantined systems, another name.
    pub note: Option<String>,
}

impl HostRow {
    /// The row of `name`, from what was learnt of it (`report`: a pulling
    /// host's newest report to the channel).
    pub fn new(name: &str, state: &HostState, report: Option<&HostReport>) -> HostRow {
        let row = HostRow {
            name: name.to_owned(),
            state: "-".into(),
            ..HostRow::default()
        };
        match state {
            HostState::Answered(status) => answered(row, status),
            HostState::Unreachable(why) => HostRow {
                state: "unreachable".into(),
                reachable: "no",
                note: Some(printable(why)),
                ..row
            },
            HostState::Pulls => pulling(row, report),
        }
    }

    /// Its cells, for the fleet's table (`root`: the pages' root).
    pub fn cells(&self, root: &str, now_ms: u64) -> Markup {
        html! {
            td data-label="host" { a href={ (root) "hosts/" (self.name) } { (self.name) } }
            td data-label="revision" class="mono" { (self.rev.as_deref().map_or("-", short)) }
            td data-label="system" class="mono" { (self.system.as_deref().map_or("-", system_name)) }
            td data-label="state" { (badge(&self.state)) }
            td data-label="last deploy" class="mono" {
                (self.deploy_id.as_deref().unwrap_or("-"))
                @if let Some(at) = self.ended_at_ms { " " (time(at, now_ms)) }
            }
            td data-label="reboot" { (match self.reboot { Some(true) => "needed", Some(false) => "no", None => "-" }) }
            td data-label="reachable" { (badge(match self.reachable { "yes" => "reachable", "no" => "unreachable", other => other })) }
            td data-label="note" class="note" { (self.note.as_deref().unwrap_or("")) }
        }
    }
}

fn answered(row: HostRow, status: &StatusResponse) -> HostRow {
    let shown = status
        .active_deploy
        .as_ref()
        .or(status.last_deploy.as_ref());
    let mut notes = Vec::new();
    if status.hostname.as_str() != row.name {
        notes.push(format!(
            "answers as {}: a deploy would be refused (wrong_host)",
            status.hostname
        ));
    }
    if !status.quarantined.is_empty() {
        notes.push(format!("{} quarantined", status.quarantined.len()));
    }
    if let Some(error) = status
        .last_deploy
        .as_ref()
        .filter(|_| status.active_deploy.is_none())
        .and_then(|last| last.error.as_deref())
    {
        notes.push(printable(error));
    }
    HostRow {
        rev: status
            .current_deploy
            .as_ref()
            .and_then(|deploy| deploy.rev.as_ref())
            .map(|rev| rev.to_string()),
        system: status.current_system.clone(),
        state: shown.map_or("-".into(), |deploy| deploy.state.to_string()),
        deploy_id: shown.map(|deploy| deploy.deploy_id.to_string()),
        ended_at_ms: shown.and_then(|deploy| deploy.finished_at_ms),
        reboot: Some(status.reboot_required),
        reachable: "yes",
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        ..row
    }
}

fn pulling(row: HostRow, report: Option<&HostReport>) -> HostRow {
    let Some(report) = report else {
        return HostRow {
            reachable: "pulls",
            note: Some("no report yet".into()),
            ..row
        };
    };
    let record = &report.record;
    // Its system runs only if the deploy it reports succeeded.
    let running = record.state == deployd_protocol::api::DeployState::Succeeded;
    HostRow {
        rev: record
            .rev
            .as_ref()
            .filter(|_| running)
            .map(|rev| rev.to_string()),
        system: running.then(|| record.store_path.to_string()),
        state: record.state.to_string(),
        deploy_id: Some(record.deploy_id.to_string()),
        ended_at_ms: Some(report.sent_at.saturating_mul(1000)),
        reboot: Some(record.reboot_required),
        reachable: "pulls",
        note: record
            .error
            .as_ref()
            .map(|error| printable(&format!("{}: {}", error.code, error.message))),
        ..row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: &str, error: Option<serde_json::Value>) -> HostReport {
        let record = serde_json::from_value(serde_json::json!({
            "deploy_id": "pi-1", "host": "pi",
            "store_path": "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-pi",
            "action": "switch", "flake": null, "rev": "a".repeat(40), "key": "ci-1",
            "issued_at": 1, "state": state, "phases": [], "error": error,
            "previous_system": null, "reboot_required": true, "log_tail": [],
            "created_at_ms": 1000, "finished_at_ms": null,
        }))
        .expect("a record");
        HostReport {
            host: "pi".parse().expect("host"),
            sent_at: 7,
            sequence: Some(1),
            record,
        }
    }

    #[test]
    fn a_pulling_host_is_shown_from_its_report_and_runs_only_what_succeeded() {
        let row = HostRow::new("pi", &HostState::Pulls, Some(&report("succeeded", None)));
        assert_eq!(row.rev.as_deref(), Some("a".repeat(40).as_str()));
        assert_eq!(row.state, "succeeded");
        assert_eq!(row.ended_at_ms, Some(7000));
        assert_eq!((row.reboot, row.reachable), (Some(true), "pulls"));
        let error = serde_json::json!({"code": "activation_failed",
            "message": "from https://ci:hunter2@cache.example.org"});
        let row = HostRow::new(
            "pi",
            &HostState::Pulls,
            Some(&report("rolled_back", Some(error))),
        );
        assert_eq!(
            (row.rev, row.system),
            (None, None),
            "it runs something else"
        );
        let note = row.note.expect("why");
        assert!(note.starts_with("activation_failed: "), "{note}");
        assert!(!note.contains("hunter2"), "{note}");
        let row = HostRow::new("pi", &HostState::Pulls, None);
        assert_eq!(row.note.as_deref(), Some("no report yet"));
    }

    #[test]
    fn a_host_that_does_not_answer_is_unreachable_with_why() {
        let why = "connection refused \x1b[31m".to_owned();
        let row = HostRow::new("sambirano", &HostState::Unreachable(why), None);
        assert_eq!((row.state.as_str(), row.reachable), ("unreachable", "no"));
        assert!(!row.note.expect("why").contains('\x1b'));
    }
}
