//! `/`: the fleet at a glance. Every host with its revision, system,
//! state, last deploy and its age, reboot needed and reachable; the
//! branches followed, the rollout running, the pushes waiting and the
//! recent rollouts.

use maud::{html, Markup};

use super::host_row::HostRow;
use super::layout::{badge, page, short, time, Depth, Live};
use crate::serve::queue::{QueuedPush, RolloutRecord};

/// Recent rollouts listed.
const RECENT_SHOWN: usize = 15;

/// What the fleet page shows.
pub struct FleetPage<'a> {
    /// The forge (`forgejo`, ...).
    pub forge: &'a str,
    /// Each branch followed and the commit last deployed from it.
    pub following: Vec<(String, Option<String>)>,
    /// The rollout running: its number, branch and commit (once fetched).
    pub running: Option<(u64, String, Option<String>)>,
    /// Pushes waiting.
    pub queued: &'a [QueuedPush],
    /// Recent rollouts, newest first.
    pub recent: Vec<&'a RolloutRecord>,
    /// Every host.
    pub hosts: Vec<HostRow>,
    /// Now (Unix ms).
    pub now_ms: u64,
}

impl FleetPage<'_> {
    /// The page.
    pub fn render(&self) -> Markup {
        let root = Depth::Root.root();
        let body = html! {
            h1 { "Fleet" }
            p class="summary" {
                (self.hosts.len()) " hosts · "
                (self.hosts.iter().filter(|host| host.reachable == "no").count()) " unreachable · "
                (self.forge) " pushes to "
                @for (index, (branch, deployed)) in self.following.iter().enumerate() {
                    @if index > 0 { ", " }
                    b { (branch) }
                    @if let Some(rev) = deployed { " (" span class="mono" { (short(rev)) } ")" }
                }
            }
            @if let Some((id, branch, rev)) = &self.running {
                p class="running" {
                    (badge("running")) " "
                    a href={ (root) "rollouts/" (id) } { "rollout " (id) } " of " b { (branch) }
                    @if let Some(rev) = rev { " at " span class="mono" { (short(rev)) } }
                }
            }
            @if !self.queued.is_empty() {
                p { "Waiting: "
                    @for (index, push) in self.queued.iter().enumerate() {
                        @if index > 0 { ", " }
                        b { (push.branch) } " " span class="mono" { (short(&push.after)) }
                    }
                }
            }
            table class="hosts" {
                thead { tr { th { "host" } th { "revision" } th { "system" } th { "state" }
                    th { "last deploy" } th { "reboot" } th { "reachable" } th { "note" } } }
                tbody {
                    @for host in &self.hosts {
                        tr id={ "host-" (host.name) } { (host.cells(root, self.now_ms)) }
                    }
                }
            }
            h2 { "Recent rollouts" }
            @if self.recent.is_empty() { p class="quiet" { "None yet." } }
            ul class="rollouts" {
                @for record in self.recent.iter().take(RECENT_SHOWN) {
                    li {
                        a href={ (root) "rollouts/" (record.id) } { "rollout " (record.id) }
                        " " (badge(&record.outcome)) " " b { (record.branch) }
                        @if let Some(rev) = &record.rev { " " span class="mono" { (short(rev)) } }
                        " · " (record.hosts.iter().filter(|host| host.result == "succeeded").count())
                        " of " (record.hosts.len()) " hosts succeeded · "
                        (time(record.finished_at_ms, self.now_ms))
                    }
                }
            }
        };
        let live = if self.running.is_some() {
            Live::Fast
        } else {
            Live::Slow
        };
        page("Fleet", Depth::Root, live, body)
    }
}
