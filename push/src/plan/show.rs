//! How `push plan` shows the fleet: one row per host side by side (what it
//! fetches, how many packages change, the closure's size change, reboot,
//! switch), then each host's details as nvd prints them; or JSON.

use deployd_protocol::{Revision, StorePath};

use super::compare::Planned;
use crate::table;

/// One host's plan, or why it has none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostPlan {
    /// The host.
    pub host: String,
    /// Its new system, when it was built.
    pub system: Option<StorePath>,
    /// The plan, or why there is none.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A host's plan, or why there is none.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The host answered.
    Planned(Box<Planned>),
    /// It could not be reached.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// It answered with an error (or as another host).
    Refused {
        /// Why.
        reason: String,
    },
    /// Its system did not build (or could not be read).
    BuildFailed {
        /// Why.
        reason: String,
    },
    /// Its caches lack its system (a deploy would not be sent).
    NotInCache {
        /// Why.
        reason: String,
    },
}

impl HostPlan {
    /// A host with no plan, for `outcome`'s reason.
    pub fn ended(host: &deployd_protocol::HostName, outcome: Outcome) -> HostPlan {
        HostPlan {
            host: host.to_string(),
            system: None,
            outcome,
        }
    }

    /// Whether the host answered with its plan.
    pub fn planned(&self) -> bool {
        matches!(self.outcome, Outcome::Planned(_))
    }
}

/// `bytes` in MiB, two decimals (as Nix prints sizes).
fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A signed size change.
fn change(before: u64, after: u64) -> String {
    let sign = if after >= before { "+" } else { "-" };
    format!("{sign}{}", mib(after.abs_diff(before)))
}

/// The table and the details.
pub fn text(plans: &[HostPlan]) -> String {
    let rows: Vec<Vec<String>> = plans.iter().map(row).collect();
    let mut text = table::render(
        &["HOST", "FETCH", "PACKAGES", "CLOSURE", "REBOOT", "SWITCH"],
        &rows,
    );
    for plan in plans {
        text.push('\n');
        text.push_str(&details(plan));
    }
    text
}

fn row(plan: &HostPlan) -> Vec<String> {
    let host = plan.host.clone();
    let planned = match &plan.outcome {
        Outcome::Planned(planned) => planned,
        Outcome::Unreachable { .. } => return vec![host, "unreachable".into()],
        Outcome::Refused { .. } => return vec![host, "refused".into()],
        Outcome::BuildFailed { .. } => return vec![host, "build failed".into()],
        Outcome::NotInCache { .. } => return vec![host, "not in its caches".into()],
    };
    let fetch = &planned.fetch;
    vec![
        host,
        format!(
            "{} paths, {} ({} unpacked)",
            fetch.paths.len(),
            mib(fetch.download_bytes),
            mib(fetch.unpacked_bytes)
        ),
        format!(
            "{} changed, {} added, {} removed",
            planned.changed.len(),
            planned.added.len(),
            planned.removed.len()
        ),
        change(planned.closure_bytes_before, planned.closure_bytes_after),
        if planned.reboot() { "reboot" } else { "no" }.into(),
        if planned.switch_refused() {
            "switch refused"
        } else {
            "ok"
        }
        .into(),
    ]
}

fn details(plan: &HostPlan) -> String {
    let host = &plan.host;
    let planned = match &plan.outcome {
        Outcome::Planned(planned) => planned,
        Outcome::Unreachable { reason }
        | Outcome::Refused { reason }
        | Outcome::BuildFailed { reason }
        | Outcome::NotInCache { reason } => return format!("{host}: {reason}\n"),
    };
    let mut text = format!(
        "{host}: {} -> {}\n",
        planned
            .running
            .as_ref()
            .map_or("(nothing running)", StorePath::as_str),
        plan.system.as_ref().map_or("?", StorePath::as_str)
    );
    for changed in &planned.changed {
        text.push_str(&format!(
            "  [C] {}: {} -> {}\n",
            changed.name,
            changed.old.join(", "),
            changed.new.join(", ")
        ));
    }
    for (mark, packages) in [("A", &planned.added), ("R", &planned.removed)] {
        for package in packages {
            text.push_str(&format!(
                "  [{mark}] {}: {}\n",
                package.name,
                package.versions.join(", ")
            ));
        }
    }
    text.push_str(&format!(
        "  closure size: {} -> {} ({})\n",
        mib(planned.closure_bytes_before),
        mib(planned.closure_bytes_after),
        change(planned.closure_bytes_before, planned.closure_bytes_after)
    ));
    if planned.reboot() {
        text.push_str(&format!(
            "  reboot: {} differ from the booted system's\n",
            planned.reboot_for.join(", ")
        ));
    }
    if planned.switch_refused() {
        let changes: Vec<String> = planned
            .inhibitors_changed
            .iter()
            .map(|change| format!("{}: {} -> {}", change.name, change.old, change.new))
            .collect();
        text.push_str(&format!(
            "  switch refused: switch inhibitors change ({}); deploy with --action boot and reboot\n",
            changes.join("; ")
        ));
    }
    let fetch = &planned.fetch;
    text.push_str(&format!(
        "  fetch: {} paths, {} download, {} unpacked\n",
        fetch.paths.len(),
        mib(fetch.download_bytes),
        mib(fetch.unpacked_bytes)
    ));
    for path in &fetch.paths {
        text.push_str(&format!("    {path}\n"));
    }
    for path in &fetch.unavailable {
        text.push_str(&format!("    {path} (in none of its caches)\n"));
    }
    text
}

/// The plans as JSON: `{"rev", "hosts": [...]}`.
pub fn json(rev: &Revision, plans: &[HostPlan]) -> String {
    serde_json::json!({ "rev": rev, "hosts": plans }).to_string()
}
