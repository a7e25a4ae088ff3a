//! The service's memory, kept in `state_dir/queue.json` and written whole
//! (temporary file, fsync, rename, fsync of the directory) before a hook is
//! answered: the pushes waiting (the newest per branch; the ones it replaced
//! kept as superseded), the rollout running (back at the head of the queue
//! after a crash), the tip last deployed per branch (so a replayed hook does
//! nothing), and the recent rollouts with every host's result.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Rollouts kept in the history.
const HISTORY: usize = 50;
/// Pushes a branch may have superseded before the oldest are forgotten.
const SUPERSEDED_KEPT: usize = 100;

/// A push waiting to be deployed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuedPush {
    /// The branch.
    pub branch: String,
    /// The commit its hook named (the fetched tip is what gets deployed).
    pub after: String,
    /// The forge's delivery id.
    pub delivery: String,
    /// When the hook arrived (Unix ms).
    pub received_at_ms: u64,
    /// Commits named by earlier hooks of this branch that this one replaced.
    #[serde(default)]
    pub superseded: Vec<String>,
}

/// How one host ended in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostOutcome {
    /// The host.
    pub host: String,
    /// `succeeded`, `failed`, `rolled_back`, `refused`, `unreachable`, `build_failed`, ...
    pub result: String,
    /// Why, when it did not succeed.
    #[serde(default)]
    pub message: Option<String>,
    /// Its deploy record's URL, when a deploy was started.
    #[serde(default)]
    pub target_url: Option<String>,
}

/// A rollout that ran (or was found needless).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolloutRecord {
    /// Its number, from 1, in the order rollouts started (its page is
    /// `/rollouts/ID`). Records written before rollouts had numbers read
    /// as 0 and are numbered when the queue is opened.
    #[serde(default)]
    pub id: u64,
    /// The branch.
    pub branch: String,
    /// The commit deployed (the fetched tip).
    pub rev: Option<String>,
    /// `succeeded` (every host), `failed` (some host did not), `unchanged`
    /// (the tip was already deployed), `error` (nothing could be deployed).
    pub outcome: String,
    /// Why, for `error` and `unchanged`.
    #[serde(default)]
    pub message: Option<String>,
    /// When it started and ended (Unix ms).
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: u64,
    /// Every host's result.
    #[serde(default)]
    pub hosts: Vec<HostOutcome>,
}

/// Everything kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    /// Waiting, oldest first; at most one per branch.
    pub pending: Vec<QueuedPush>,
    /// The push being deployed.
    pub running: Option<QueuedPush>,
    /// The running rollout's number.
    #[serde(default)]
    pub running_id: Option<u64>,
    /// The number the last rollout started was given.
    #[serde(default)]
    pub last_id: u64,
    /// The tip last deployed, per branch.
    pub deployed: BTreeMap<String, String>,
    /// Recent rollouts, newest last.
    pub history: Vec<RolloutRecord>,
}

impl QueueState {
    /// The rollout numbered `id`, if it is kept.
    pub fn rollout(&self, id: u64) -> Option<&RolloutRecord> {
        self.history.iter().find(|record| record.id == id)
    }
}

/// The state and its file.
pub struct Queue {
    path: PathBuf,
    state: QueueState,
}

impl Queue {
    /// Loads `state_dir/queue.json`; a rollout that was running when the
    /// service stopped goes back to the head of the queue. An unreadable file
    /// is set aside (`queue.json.unreadable`), never fatal.
    pub fn open(state_dir: &Path) -> Result<Queue> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let path = state_dir.join("queue.json");
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<QueueState>(&bytes) {
                Ok(state) => state,
                Err(error) => {
                    let aside = path.with_extension("json.unreadable");
                    log::error!(
                        "{} is unreadable ({error}); moved to {}",
                        path.display(),
                        aside.display()
                    );
                    std::fs::rename(&path, &aside)
                        .with_context(|| format!("cannot move {} aside", path.display()))?;
                    QueueState::default()
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => QueueState::default(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        number_old_records(&mut state);
        if let Some(interrupted) = state.running.take() {
            state.running_id = None;
            let branch = interrupted.branch.clone();
            match state.pending.iter_mut().find(|push| push.branch == branch) {
                // A newer push of the branch waits: it wins, as it would have.
                Some(newer) => {
                    log::warn!("the rollout of {branch} was interrupted; a newer push replaces it");
                    newer.superseded.extend(interrupted.superseded);
                    if newer.after != interrupted.after {
                        newer.superseded.push(interrupted.after);
                    }
                }
                None => {
                    log::warn!("the rollout of {branch} was interrupted; it runs again");
                    state.pending.insert(0, interrupted);
                }
            }
        }
        let queue = Queue { path, state };
        queue.save()?;
        Ok(queue)
    }

    /// What is kept.
    pub fn state(&self) -> &QueueState {
        &self.state
    }

    /// Queues `push`, replacing (and superseding) a waiting push of the same
    /// branch; written before it returns.
    pub fn enqueue(&mut self, push: QueuedPush) -> Result<()> {
        let mut next = self.state.clone();
        match next
            .pending
            .iter_mut()
            .find(|queued| queued.branch == push.branch)
        {
            Some(queued) => {
                let mut superseded = std::mem::take(&mut queued.superseded);
                if queued.after != push.after {
                    superseded.push(queued.after.clone());
                }
                superseded.retain(|rev| *rev != push.after);
                let keep_from = superseded.len().saturating_sub(SUPERSEDED_KEPT);
                *queued = QueuedPush {
                    superseded: superseded.split_off(keep_from),
                    ..push
                };
            }
            None => next.pending.push(push),
        }
        self.replace(next)
    }

    /// Whether `push` names the tip already deployed on a branch with
    /// nothing waiting or running: a replayed hook, with nothing to do.
    pub fn already_deployed(&self, push: &QueuedPush) -> bool {
        let busy = self.state.running.iter().chain(&self.state.pending);
        self.state.deployed.get(&push.branch) == Some(&push.after)
            && !busy.into_iter().any(|queued| queued.branch == push.branch)
    }

    /// Takes the oldest waiting push as the running one, with the number
    /// its rollout has (a rollout a restart cut short runs again under a
    /// new number).
    pub fn start_next(&mut self) -> Result<Option<(QueuedPush, u64)>> {
        if self.state.pending.is_empty() {
            return Ok(None);
        }
        let mut next = self.state.clone();
        let push = next.pending.remove(0);
        next.last_id += 1;
        let id = next.last_id;
        next.running = Some(push.clone());
        next.running_id = Some(id);
        self.replace(next)?;
        Ok(Some((push, id)))
    }

    /// Ends the running push with `record`.
    pub fn finish(&mut self, record: RolloutRecord) -> Result<()> {
        let mut next = self.state.clone();
        next.running = None;
        next.running_id = None;
        if let (Some(rev), "succeeded" | "failed") = (&record.rev, record.outcome.as_str()) {
            next.deployed.insert(record.branch.clone(), rev.clone());
        }
        next.history.push(record);
        let excess = next.history.len().saturating_sub(HISTORY);
        next.history.drain(..excess);
        self.replace(next)
    }

    fn replace(&mut self, next: QueueState) -> Result<()> {
        let previous = std::mem::replace(&mut self.state, next);
        if let Err(error) = self.save() {
            // Memory never says more than the disk does.
            self.state = previous;
            return Err(error);
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state)?;
        write_atomically(&self.path, &bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Numbers the records kept before rollouts had numbers (read as 0), in
/// their order, after the highest number given; the next rollout's number
/// is above all.
fn number_old_records(state: &mut QueueState) {
    let highest = state.history.iter().map(|record| record.id).max();
    state.last_id = state.last_id.max(highest.unwrap_or(0));
    for record in state.history.iter_mut().filter(|record| record.id == 0) {
        state.last_id += 1;
        record.id = state.last_id;
    }
}

/// Writes `bytes` to `path` whole or not at all, and durably.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(branch: &str, after: char) -> QueuedPush {
        QueuedPush {
            branch: branch.into(),
            after: after.to_string().repeat(40),
            delivery: format!("d-{after}"),
            received_at_ms: 1,
            superseded: Vec::new(),
        }
    }

    #[test]
    fn the_newest_push_of_a_branch_wins_and_the_others_are_superseded() {
        let dir = tempfile::tempdir().expect("dir");
        let mut queue = Queue::open(dir.path()).expect("open");
        queue.enqueue(push("main", 'a')).expect("a");
        queue.enqueue(push("dev", 'd')).expect("d");
        queue.enqueue(push("main", 'b')).expect("b");
        queue.enqueue(push("main", 'c')).expect("c");
        let pending = &queue.state().pending;
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].after, "c".repeat(40));
        assert_eq!(pending[0].superseded, ["a".repeat(40), "b".repeat(40)]);
        // The same tip again (a redelivery) supersedes nothing.
        queue.enqueue(push("main", 'c')).expect("c again");
        assert_eq!(queue.state().pending[0].superseded.len(), 2);
    }

    #[test]
    fn a_running_push_survives_a_crash_and_runs_again_first() {
        let dir = tempfile::tempdir().expect("dir");
        let mut queue = Queue::open(dir.path()).expect("open");
        queue.enqueue(push("main", 'a')).expect("a");
        queue.enqueue(push("dev", 'd')).expect("d");
        let (running, first_id) = queue.start_next().expect("start").expect("one");
        assert_eq!(running.branch, "main");
        assert_eq!(first_id, 1);
        drop(queue);
        let mut reopened = Queue::open(dir.path()).expect("reopen");
        assert_eq!(reopened.state().running, None);
        assert_eq!(reopened.state().running_id, None);
        let (again, id) = reopened.start_next().expect("start").expect("again");
        assert_eq!(again, running);
        assert_eq!(id, 2, "a rollout run again is a new rollout");
        reopened
            .finish(RolloutRecord {
                id,
                branch: "main".into(),
                rev: Some("a".repeat(40)),
                outcome: "succeeded".into(),
                message: None,
                started_at_ms: 1,
                finished_at_ms: 2,
                hosts: Vec::new(),
            })
            .expect("finish");
        let reopened = Queue::open(dir.path()).expect("reopen");
        assert_eq!(reopened.state().deployed["main"], "a".repeat(40));
        assert_eq!(reopened.state().pending.len(), 1);
        assert_eq!(reopened.state().history.len(), 1);
        assert_eq!(
            reopened
                .state()
                .rollout(2)
                .map(|record| record.branch.as_str()),
            Some("main")
        );
        assert!(reopened.state().rollout(1).is_none());
    }

    #[test]
    fn records_kept_before_rollouts_had_numbers_are_numbered_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let record = |rev: char| {
            serde_json::json!({"branch": "main", "rev": rev.to_string().repeat(40),
                "outcome": "succeeded", "started_at_ms": 1, "finished_at_ms": 2})
        };
        let old = serde_json::json!({"pending": [], "running": null, "deployed": {},
            "history": [record('a'), record('b')]});
        std::fs::write(dir.path().join("queue.json"), old.to_string()).expect("write");
        let mut queue = Queue::open(dir.path()).expect("open");
        let ids: Vec<u64> = queue
            .state()
            .history
            .iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(ids, [1, 2]);
        queue.enqueue(push("main", 'c')).expect("c");
        let (_, id) = queue.start_next().expect("start").expect("c runs");
        assert_eq!(id, 3);
    }

    #[test]
    fn an_interrupted_push_gives_way_to_a_newer_one_of_its_branch() {
        let dir = tempfile::tempdir().expect("dir");
        let mut queue = Queue::open(dir.path()).expect("open");
        queue.enqueue(push("main", 'a')).expect("a");
        queue.start_next().expect("start").expect("a runs");
        queue.enqueue(push("main", 'b')).expect("b");
        drop(queue);
        let reopened = Queue::open(dir.path()).expect("reopen");
        let pending = &reopened.state().pending;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].after, "b".repeat(40));
        assert_eq!(pending[0].superseded, ["a".repeat(40)]);
    }

    #[test]
    fn a_hook_for_the_deployed_tip_of_an_idle_branch_is_already_done() {
        let dir = tempfile::tempdir().expect("dir");
        let mut queue = Queue::open(dir.path()).expect("open");
        queue.enqueue(push("main", 'a')).expect("a");
        assert!(
            !queue.already_deployed(&push("main", 'a')),
            "waiting is not deployed"
        );
        let (_, id) = queue.start_next().expect("start").expect("a runs");
        queue
            .finish(RolloutRecord {
                id,
                branch: "main".into(),
                rev: Some("a".repeat(40)),
                outcome: "failed".into(),
                message: None,
                started_at_ms: 1,
                finished_at_ms: 2,
                hosts: Vec::new(),
            })
            .expect("finish");
        assert!(queue.already_deployed(&push("main", 'a')));
        assert!(!queue.already_deployed(&push("main", 'b')));
        assert!(!queue.already_deployed(&push("dev", 'a')));
        queue.enqueue(push("main", 'b')).expect("b");
        assert!(
            !queue.already_deployed(&push("main", 'a')),
            "a newer push waits"
        );
    }

    #[test]
    fn an_unreadable_queue_is_set_aside() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("queue.json"), b"{ torn").expect("write");
        let queue = Queue::open(dir.path()).expect("open");
        assert!(queue.state().pending.is_empty());
        assert!(dir.path().join("queue.json.unreadable").exists());
    }
}
