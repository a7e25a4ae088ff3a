//! `/rollouts/ID`: one rollout. The commit, its hosts in their batches,
//! each host's phases (with when each began) and its deploy's log lines,
//! and how it ended with the reason; live while the rollout runs.

use maud::{html, Markup};

use super::journal::{HostView, RolloutView};
use super::layout::{badge, page, rfc3339, short, time, took, Depth, Live};
use crate::serve::queue::RolloutRecord;

/// What a rollout's page shows: its record once it ended, its view
/// (phases and lines) when it was kept.
pub struct RolloutPage<'a> {
    /// Its number.
    pub id: u64,
    /// Its record, once it ended.
    pub record: Option<&'a RolloutRecord>,
    /// Its hosts' phases and lines.
    pub view: Option<RolloutView>,
    /// Now (Unix ms).
    pub now_ms: u64,
}

impl RolloutPage<'_> {
    /// The page.
    pub fn render(&self) -> Markup {
        let running = self.record.is_none();
        let view = self.view.clone().unwrap_or_default();
        let rev = self
            .record
            .and_then(|record| record.rev.clone())
            .or(view.rev.clone());
        let branch = self
            .record
            .map_or(view.branch.as_str(), |record| &record.branch);
        let started = self
            .record
            .map_or(view.started_at_ms, |record| record.started_at_ms);
        let body = html! {
            h1 { "Rollout " (self.id) " " (badge(self.record.map_or("running", |record| &record.outcome))) }
            dl class="facts" {
                dt { "branch" } dd { (branch) }
                dt { "commit" } dd class="mono" { (rev.as_deref().unwrap_or("not fetched yet")) }
                dt { "started" } dd { (rfc3339(started)) " (" (time(started, self.now_ms)) ")" }
                @if let Some(record) = self.record {
                    dt { "took" } dd { (took(record.started_at_ms, record.finished_at_ms)) }
                    @if let Some(message) = &record.message { dt { "why" } dd { (message) } }
                }
            }
            @for (label, hosts) in batches(&view, self.record) {
                @if !label.is_empty() { h2 { (label) } }
                @for host in hosts {
                    (self.host(&host, view.hosts.get(&host), running, started))
                }
            }
        };
        let title = format!(
            "Rollout {} of {branch}{}",
            self.id,
            rev.as_deref()
                .map_or(String::new(), |rev| format!(" at {}", short(rev)))
        );
        let live = if running { Live::Fast } else { Live::No };
        page(&title, Depth::Nested, live, body)
    }

    /// One host's part: its result and why, its phases, its log lines.
    fn host(&self, name: &str, view: Option<&HostView>, running: bool, started: u64) -> Markup {
        let outcome = self
            .record
            .and_then(|record| record.hosts.iter().find(|host| host.host == name));
        let state = outcome
            .map(|outcome| outcome.result.as_str())
            .or(view.map(HostView::phase))
            .unwrap_or("waiting");
        let message = outcome
            .and_then(|outcome| outcome.message.as_deref())
            .or(view.and_then(|view| view.message.as_deref()));
        let open = running || state != "succeeded";
        html! {
            section class="host" id={ "host-" (name) } data-state=(state) {
                h3 {
                    a href={ "../hosts/" (name) } { (name) } " " (badge(state))
                    @if let Some(id) = view.and_then(|view| view.deploy_id.as_deref()) {
                        " " span class="mono quiet" { (id) }
                    }
                }
                @if let Some(message) = message { p class="why" { (message) } }
                @if let Some(view) = view {
                    ol class="phases" {
                        @for (phase, at) in &view.phases {
                            li { (phase.replace('_', " ")) " " span class="quiet" { "+" (took(started, *at)) } }
                        }
                    }
                    @if !view.log.is_empty() {
                        details open[open] {
                            summary { (view.log.len()) " log lines"
                                @if view.lines_dropped > 0 { " (the " (view.lines_dropped) " before not kept)" } }
                            pre class="log" { @for line in &view.log { (line) "\n" } }
                        }
                    }
                }
            }
        }
    }
}

/// The batches with their hosts: as planned, with any host the record
/// names that no batch holds (a rollout kept from before views) at the end.
fn batches(view: &RolloutView, record: Option<&RolloutRecord>) -> Vec<(String, Vec<String>)> {
    let named = view.batches.len();
    let mut batches: Vec<(String, Vec<String>)> = view
        .batches
        .iter()
        .map(|(name, hosts)| {
            let label = match name.as_str() {
                "" => String::new(),
                "canary" => "Canary".to_owned(),
                "1" if named == 1 => String::new(),
                number => format!("Batch {number}"),
            };
            (label, hosts.clone())
        })
        .collect();
    let placed: std::collections::BTreeSet<&String> =
        view.batches.iter().flat_map(|(_, hosts)| hosts).collect();
    let mut rest: Vec<String> = view
        .hosts
        .keys()
        .chain(
            record
                .into_iter()
                .flat_map(|record| record.hosts.iter().map(|host| &host.host)),
        )
        .filter(|host| !placed.contains(host))
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    if !rest.is_empty() {
        batches.push((String::new(), rest));
    }
    batches
}
