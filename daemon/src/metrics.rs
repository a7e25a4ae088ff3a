//! `GET /metrics` in Prometheus' text format: deploys by outcome, deploy
//! durations, the current system, the last success, whether a reboot is
//! needed, whether a deploy runs, how many store paths are quarantined, and
//! the requests refused by error code (a `quarantined` deploy among them),
//! and the polls of `[pull]` channels by result.

use std::collections::BTreeMap;
use std::fmt::Write;

use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::ErrorCode;

/// Counts since the daemon started, seeded from the kept history.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    succeeded: u64,
    failed: u64,
    rolled_back: u64,
    duration_sum_s: f64,
    duration_count: u64,
    last_success_ms: Option<u64>,
    /// Error answers by code, since the daemon started.
    refused: BTreeMap<&'static str, u64>,
    /// Polls of channels, by result, since the daemon started.
    pull_polls: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// Counters as if every kept finished deploy had just ended.
    pub fn from_history<'a>(records: impl Iterator<Item = &'a DeployRecord>) -> Self {
        let mut counters = Counters::default();
        for record in records {
            counters.count(record);
        }
        counters
    }

    /// Counts a request answered with the error `code`.
    pub fn refuse(&mut self, code: ErrorCode) {
        *self.refused.entry(code.as_str()).or_default() += 1;
    }

    /// Counts a poll of a channel that ended in `result` (`applied`,
    /// `unchanged`, `not_modified`, `not_found`, `busy`, `refused`,
    /// `failed`).
    pub fn poll(&mut self, result: &'static str) {
        *self.pull_polls.entry(result).or_default() += 1;
    }

    /// Counts a finished deploy.
    pub fn count(&mut self, record: &DeployRecord) {
        match record.state {
            DeployState::Succeeded => {
                self.succeeded += 1;
                self.last_success_ms = self.last_success_ms.max(record.finished_at_ms);
            }
            DeployState::Failed => self.failed += 1,
            DeployState::RolledBack => self.rolled_back += 1,
            _ => return,
        }
        if let Some(finished) = record.finished_at_ms {
            self.duration_sum_s += finished.saturating_sub(record.created_at_ms) as f64 / 1000.0;
            self.duration_count += 1;
        }
    }
}

/// What the host looks like now, for the gauges.
pub struct Gauges<'a> {
    /// `/run/current-system`.
    pub current_system: Option<&'a str>,
    /// Whether the current system needs a reboot.
    pub reboot_required: bool,
    /// Whether a deploy runs.
    pub deploying: bool,
    /// How many store paths are quarantined now.
    pub quarantined: usize,
}

/// Renders the metrics.
pub fn render(counters: &Counters, gauges: &Gauges<'_>) -> String {
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let outcome = |name: &str, count: u64| (format!("{{outcome=\"{name}\"}}"), count.to_string());
    metric(
        "deployd_deploys_total",
        "counter",
        "Deploys that ended, by outcome.",
        &[
            outcome("succeeded", counters.succeeded),
            outcome("failed", counters.failed),
            outcome("rolled_back", counters.rolled_back),
        ],
    );
    // A summary's samples are `name_sum` and `name_count`: the suffix is
    // written where labels would go.
    metric(
        "deployd_deploy_duration_seconds",
        "summary",
        "Time from receiving a deploy to its end.",
        &[
            ("_sum".into(), format!("{:.3}", counters.duration_sum_s)),
            ("_count".into(), counters.duration_count.to_string()),
        ],
    );
    if let Some(system) = gauges.current_system {
        metric(
            "deployd_current_system_info",
            "gauge",
            "The running system (/run/current-system).",
            &[(format!("{{store_path=\"{}\"}}", escape(system)), "1".into())],
        );
    }
    if let Some(last) = counters.last_success_ms {
        metric(
            "deployd_last_success_timestamp_seconds",
            "gauge",
            "When the last deploy succeeded.",
            &[(String::new(), format!("{:.3}", last as f64 / 1000.0))],
        );
    }
    let flag = |on: bool| if on { "1" } else { "0" }.to_owned();
    metric(
        "deployd_reboot_required",
        "gauge",
        "Whether the running system needs a reboot (kernel, initrd or modules changed).",
        &[(String::new(), flag(gauges.reboot_required))],
    );
    metric(
        "deployd_deploy_in_progress",
        "gauge",
        "Whether a deploy is running.",
        &[(String::new(), flag(gauges.deploying))],
    );
    metric(
        "deployd_quarantined_store_paths",
        "gauge",
        "Store paths refused (quarantined) unless a deploy says retry_failed: their last deploy here failed or rolled back within quarantine_s.",
        &[(String::new(), gauges.quarantined.to_string())],
    );
    let refused: Vec<(String, String)> = counters
        .refused
        .iter()
        .map(|(code, count)| (format!("{{code=\"{code}\"}}"), count.to_string()))
        .collect();
    metric(
        "deployd_refused_total",
        "counter",
        "Requests answered with an error, by its code (a code appears once answered).",
        &refused,
    );
    if !counters.pull_polls.is_empty() {
        let polls: Vec<(String, String)> = counters
            .pull_polls
            .iter()
            .map(|(result, count)| (format!("{{result=\"{result}\"}}"), count.to_string()))
            .collect();
        metric(
            "deployd_pull_polls_total",
            "counter",
            "Polls of the [pull] channels, by result (a result appears once it happened).",
            &polls,
        );
    }
    text
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut counters = Counters {
            succeeded: 2,
            failed: 1,
            rolled_back: 0,
            duration_sum_s: 1.5,
            duration_count: 3,
            last_success_ms: Some(1_800_000_000_500),
            refused: BTreeMap::new(),
            pull_polls: BTreeMap::new(),
        };
        counters.poll("applied");
        counters.poll("unchanged");
        counters.poll("unchanged");
        counters.refuse(ErrorCode::NotFound);
        counters.refuse(ErrorCode::NotFound);
        counters.refuse(ErrorCode::BadSignature);
        counters.refuse(ErrorCode::Quarantined);
        let gauges = Gauges {
            current_system: Some("/nix/store/abc-nixos-system"),
            reboot_required: true,
            deploying: false,
            quarantined: 2,
        };
        let text = render(&counters, &gauges);
        for line in [
            "# TYPE deployd_deploys_total counter",
            "deployd_deploys_total{outcome=\"succeeded\"} 2",
            "deployd_deploys_total{outcome=\"failed\"} 1",
            "deployd_deploys_total{outcome=\"rolled_back\"} 0",
            "deployd_deploy_duration_seconds_sum 1.500",
            "deployd_deploy_duration_seconds_count 3",
            "deployd_current_system_info{store_path=\"/nix/store/abc-nixos-system\"} 1",
            "deployd_last_success_timestamp_seconds 1800000000.500",
            "deployd_reboot_required 1",
            "deployd_deploy_in_progress 0",
            "# TYPE deployd_quarantined_store_paths gauge",
            "deployd_quarantined_store_paths 2",
            "# TYPE deployd_refused_total counter",
            "deployd_refused_total{code=\"bad_signature\"} 1",
            "deployd_refused_total{code=\"not_found\"} 2",
            "deployd_refused_total{code=\"quarantined\"} 1",
            "# TYPE deployd_pull_polls_total counter",
            "deployd_pull_polls_total{result=\"applied\"} 1",
            "deployd_pull_polls_total{result=\"unchanged\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
