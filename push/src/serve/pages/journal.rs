//! What the rollout pages show beyond a rollout's record: its hosts in
//! their batches, each host's phases with their times and its deploy's log
//! lines, as the hosts' event streams tell them. Held in memory while the
//! rollout runs (the page follows it), then written whole to
//! `state_dir/rollouts/ID.json`; kept for the rollouts the history keeps.
//! Bounded: a host keeps its last [`LOG_LINES_KEPT`] lines, each cut at
//! [`LOG_LINE_CHARS`]; every line is made printable and its credentials
//! masked before it is kept (the pages are open to readers).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};

use crate::progress::printable;

/// Log lines kept per host and rollout (the earlier ones are counted).
pub const LOG_LINES_KEPT: usize = 300;
/// Characters kept of a log line.
pub const LOG_LINE_CHARS: usize = 1000;

/// A rollout as its page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolloutView {
    /// Its number.
    pub id: u64,
    /// The branch.
    pub branch: String,
    /// The commit, once fetched.
    pub rev: Option<String>,
    /// When it started (Unix ms).
    pub started_at_ms: u64,
    /// The batches in their order (`canary`, `1`, ...), each with its
    /// hosts; one unnamed batch when the rollout is not in batches.
    pub batches: Vec<(String, Vec<String>)>,
    /// Each host, by name.
    pub hosts: BTreeMap<String, HostView>,
}

/// One host in a rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostView {
    /// The phases it went through, with when each began (Unix ms).
    pub phases: Vec<(String, u64)>,
    /// Its deploy on the host, once it took it.
    pub deploy_id: Option<String>,
    /// How it ended (`succeeded`, `rolled_back`, `unreachable`, ...).
    pub result: Option<String>,
    /// What its commit status says of it, when it did not succeed.
    pub message: Option<String>,
    /// Its deploy's last log lines and push serve's notes about it.
    pub log: VecDeque<String>,
    /// Lines that were not kept (the earliest).
    pub lines_dropped: u64,
}

impl HostView {
    /// The phase it is in (or ended in).
    pub fn phase(&self) -> &str {
        self.phases.last().map_or("waiting", |(phase, _)| phase)
    }

    fn enter(&mut self, phase: &str, at_ms: u64) {
        if self.phase() != phase || self.phases.is_empty() {
            self.phases.push((phase.to_owned(), at_ms));
        }
    }

    fn keep(&mut self, line: String) {
        if self.log.len() == LOG_LINES_KEPT {
            self.log.pop_front();
            self.lines_dropped += 1;
        }
        self.log.push_back(line);
    }
}

/// The running rollout's view, and where finished ones are kept.
pub struct Journal {
    dir: PathBuf,
    live: Mutex<Option<RolloutView>>,
}

impl Journal {
    /// Keeps finished rollouts in `state_dir/rollouts`.
    pub fn new(state_dir: &Path) -> Self {
        Journal {
            dir: state_dir.join("rollouts"),
            live: Mutex::new(None),
        }
    }

    fn live(&self) -> MutexGuard<'_, Option<RolloutView>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rollout `id` of `branch` starts.
    pub fn begin(&self, id: u64, branch: &str, started_at_ms: u64) {
        *self.live() = Some(RolloutView {
            id,
            branch: branch.to_owned(),
            started_at_ms,
            ..RolloutView::default()
        });
    }

    /// Changes the running rollout's view, if there is one.
    fn change(&self, change: impl FnOnce(&mut RolloutView)) {
        if let Some(view) = self.live().as_mut() {
            change(view);
        }
    }

    /// Changes `host` in the running rollout's view.
    fn change_host(&self, host: &str, change: impl FnOnce(&mut HostView)) {
        self.change(|view| change(view.hosts.entry(host.to_owned()).or_default()));
    }

    /// The commit is fetched and these hosts are being built for.
    pub fn building(&self, rev: &str, hosts: &[String], at_ms: u64) {
        self.change(|view| {
            view.rev = Some(rev.to_owned());
            for host in hosts {
                view.hosts
                    .entry(host.clone())
                    .or_default()
                    .enter("building", at_ms);
            }
            if view.batches.is_empty() {
                view.batches = vec![(String::new(), hosts.to_vec())];
            }
        });
    }

    /// The rollout goes in these batches.
    pub fn batches(&self, batches: Vec<(String, Vec<String>)>) {
        self.change(|view| view.batches = batches);
    }

    /// `host` entered `phase`.
    pub fn phase(&self, host: &str, phase: &str, at_ms: u64) {
        self.change_host(host, |view| view.enter(phase, at_ms));
    }

    /// A log line of `host`'s deploy (or a note of push serve's about it).
    pub fn line(&self, host: &str, line: &str) {
        let mut line = printable(line);
        if let Some((cut, _)) = line.char_indices().nth(LOG_LINE_CHARS) {
            line.truncate(cut);
            line.push('…');
        }
        self.change_host(host, |view| view.keep(line));
    }

    /// `host` took its deploy `deploy_id`.
    pub fn deploying(&self, host: &str, deploy_id: &str) {
        self.change_host(host, |view| view.deploy_id = Some(deploy_id.to_owned()));
    }

    /// `host` ended with `result` (and why, when it did not succeed).
    pub fn ended(&self, host: &str, result: &str, message: Option<String>, at_ms: u64) {
        self.change_host(host, |view| {
            view.enter(result, at_ms);
            view.result = Some(result.to_owned());
            view.message = message.map(|message| printable(&message));
        });
    }

    /// The running rollout's view, if it is `id`.
    pub fn running(&self, id: u64) -> Option<RolloutView> {
        self.live().as_ref().filter(|view| view.id == id).cloned()
    }

    /// Writes the running rollout's view to disk and lets it go; removes
    /// the views of rollouts not in `kept` (the history's). A write that
    /// fails loses only the page's details, never the rollout's record.
    pub fn finish(&self, kept: &[u64]) -> Result<()> {
        let Some(view) = self.live().take() else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path(view.id);
        crate::serve::queue::write_atomically(&path, &serde_json::to_vec(&view)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|id| id.parse::<u64>().ok());
            if id.is_some_and(|id| !kept.contains(&id)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Rollout `id`'s view: the running one's, or as it was written.
    pub fn view(&self, id: u64) -> Option<RolloutView> {
        if let Some(view) = self.running(id) {
            return Some(view);
        }
        let bytes = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_keeps_its_last_lines_printable_and_without_credentials() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = Journal::new(dir.path());
        journal.begin(7, "main", 1);
        journal.building(&"a".repeat(40), &["sambirano".into()], 2);
        for number in 0..LOG_LINES_KEPT + 5 {
            journal.line("sambirano", &format!("line {number}"));
        }
        journal.line(
            "sambirano",
            "copying from https://ci:hunter2@cache.example.org \x1b[31m",
        );
        journal.line("sambirano", &"x".repeat(LOG_LINE_CHARS + 10));
        let view = journal.running(7).expect("running");
        let host = &view.hosts["sambirano"];
        assert_eq!(host.log.len(), LOG_LINES_KEPT);
        assert_eq!(host.lines_dropped, 7);
        let masked = &host.log[LOG_LINES_KEPT - 2];
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(!masked.contains('\x1b'), "{masked}");
        assert_eq!(
            host.log[LOG_LINES_KEPT - 1].chars().count(),
            LOG_LINE_CHARS + 1
        );
        assert!(journal.running(8).is_none());
    }

    #[test]
    fn phases_are_kept_once_each_in_order_with_the_result_last() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = Journal::new(dir.path());
        journal.begin(1, "main", 1);
        journal.building("a", &["sambirano".into()], 2);
        journal.phase("sambirano", "fetching", 3);
        journal.phase("sambirano", "fetching", 4);
        journal.phase("sambirano", "switching", 5);
        journal.ended(
            "sambirano",
            "rolled_back",
            Some("rolled back: switch failed".into()),
            6,
        );
        let host = &journal.running(1).expect("running").hosts["sambirano"];
        let phases: Vec<(&str, u64)> = host
            .phases
            .iter()
            .map(|(phase, at)| (phase.as_str(), *at))
            .collect();
        assert_eq!(
            phases,
            [
                ("building", 2),
                ("fetching", 3),
                ("switching", 5),
                ("rolled_back", 6)
            ]
        );
        assert_eq!(host.result.as_deref(), Some("rolled_back"));
    }

    #[test]
    fn a_finished_rollout_is_read_back_and_the_ones_let_go_are_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = Journal::new(dir.path());
        for id in 1..=3 {
            journal.begin(id, "main", id);
            journal.building("a", &["sambirano".into()], id);
            journal.finish(&[2, 3]).expect("finish");
        }
        assert!(journal.view(1).is_none(), "not kept");
        let view = journal.view(3).expect("kept");
        assert_eq!(view.id, 3);
        assert_eq!(view.hosts["sambirano"].phase(), "building");
        assert!(journal.running(3).is_none(), "no longer running");
    }
}
