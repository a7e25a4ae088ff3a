//! A deploy's log: each line goes to its file, its record's tail and its
//! live events. The file is appended outside the records lock (a slow or
//! stuck disk stalls the deploy's own task, never the API), one writer at a
//! time, so the file and the events keep one order. A deploy's lines are
//! bounded: past the limit they are counted, not kept. Every line enters
//! with the credentials of any URL in it masked, whatever wrote it (a
//! program, the switch's output file, deployd itself).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use deployd_command::redact::mask_credentials;
use deployd_protocol::DeployId;

use super::{off_the_runtime, Daemon};
use crate::events::DeployEvent;

/// Log lines kept in a record's `log_tail`.
const LOG_TAIL_LINES: usize = 20;
/// Log lines kept per deploy; later lines are counted, not kept.
const MAX_LOG_LINES: usize = 20_000;

/// Who may write a log line now, and how many each deploy has written.
#[derive(Debug, Default)]
pub struct DeployLog {
    /// Held while one line is written everywhere it goes: lines keep one
    /// order in the file and in the events.
    writer: Mutex<()>,
    /// Lines logged per running deploy (its cursor in the log file).
    lines: Mutex<HashMap<DeployId, usize>>,
}

impl DeployLog {
    fn lines(&self) -> MutexGuard<'_, HashMap<DeployId, usize>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The line to write as `id`'s next (on one line, credentials masked),
    /// or `None` past the limit.
    fn admit(&self, id: &DeployId, line: &str) -> Option<String> {
        let mut lines = self.lines();
        let count = lines.entry(id.clone()).or_insert(0);
        *count += 1;
        // One event is one line of the log file (event cursors count them).
        match (*count).cmp(&MAX_LOG_LINES) {
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Equal => {
                Some("deployd: log limit reached; further lines are dropped".to_owned())
            }
            std::cmp::Ordering::Less => {
                Some(mask_credentials(&line.replace(['\n', '\r'], " ")).into_owned())
            }
        }
    }

    /// Forgets a deploy that ended.
    pub fn forget(&self, id: &DeployId) {
        self.lines().remove(id);
    }
}

impl Daemon {
    /// Adds a line to a deploy's log: its file, its record's tail, its events.
    pub fn log(&self, id: &DeployId, line: &str) {
        let _one_writer = self
            .deploy_log
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(line) = self.deploy_log.admit(id, line) else {
            return;
        };
        let path = self.records().store.log_file(id);
        let appended = off_the_runtime(|| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| writeln!(file, "{line}"))
        });
        if let Err(error) = appended {
            log::warn!("cannot append to {}: {error}", path.display());
        }
        self.fanout.push(id, DeployEvent::Log(line.clone()));
        // The tail reaches disk with the next state change.
        self.records().store.push_log_tail(id, line, LOG_TAIL_LINES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_line_with_credentials_masked() {
        let log = DeployLog::default();
        let id: DeployId = "d1".parse().expect("id");
        assert_eq!(
            log.admit(
                &id,
                "unable to download 'http://alice:s3cret@cache/x'\nnext"
            )
            .as_deref(),
            Some("unable to download 'http://alice:***@cache/x' next")
        );
    }
}
