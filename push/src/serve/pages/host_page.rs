//! `/hosts/H`: one host. What it runs and its state now (as on the fleet
//! page), then its history: every rollout kept that deployed it, newest
//! first, with how it ended there and why.

use maud::{html, Markup};

use super::host_row::HostRow;
use super::layout::{badge, page, short, time, Depth, Live};
use crate::serve::queue::RolloutRecord;

/// What a host's page shows.
pub struct HostPage<'a> {
    /// The host now.
    pub row: HostRow,
    /// The rollout running, when it deploys this host: its number and the
    /// host's phase there.
    pub running: Option<(u64, String)>,
    /// The rollouts kept, newest first.
    pub history: Vec<&'a RolloutRecord>,
    /// Now (Unix ms).
    pub now_ms: u64,
}

impl HostPage<'_> {
    /// The page.
    pub fn render(&self) -> Markup {
        let name = &self.row.name;
        let root = Depth::Nested.root();
        let body = html! {
            h1 { (name) " " (badge(&self.row.state)) }
            table class="hosts" {
                thead { tr { th { "host" } th { "revision" } th { "system" } th { "state" }
                    th { "last deploy" } th { "reboot" } th { "reachable" } th { "note" } } }
                tbody { tr { (self.row.cells(root, self.now_ms)) } }
            }
            @if let Some(system) = &self.row.system { p class="mono small" { (system) } }
            @if let Some((id, phase)) = &self.running {
                p class="running" { (badge(phase)) " in "
                    a href={ (root) "rollouts/" (id) "#host-" (name) } { "rollout " (id) } " (running)" }
            }
            h2 { "History" }
            @if self.history.is_empty() { p class="quiet" { "No rollout kept deployed it." } }
            table class="history" {
                thead { tr { th { "rollout" } th { "commit" } th { "result" } th { "why" } th { "ended" } } }
                tbody {
                    @for record in &self.history {
                        @if let Some(outcome) = record.hosts.iter().find(|host| &host.host == name) {
                            tr {
                                td data-label="rollout" { a href={ (root) "rollouts/" (record.id) "#host-" (name) } { (record.id) } " " (record.branch) }
                                td data-label="commit" class="mono" { (record.rev.as_deref().map_or("-", short)) }
                                td data-label="result" { (badge(&outcome.result)) }
                                td data-label="why" class="note" { (outcome.message.as_deref().unwrap_or("")) }
                                td data-label="ended" { (time(record.finished_at_ms, self.now_ms)) }
                            }
                        }
                    }
                }
            }
        };
        let live = if self.running.is_some() {
            Live::Fast
        } else {
            Live::Slow
        };
        page(name, Depth::Nested, live, body)
    }
}
