//! Log lines that any peer can cause as often as it likes (a refused
//! request, a refused connection), at most one an interval: the first in
//! full, then the others counted by kind and summed up in one line when the
//! interval ends. So a flood of bad requests writes a line a minute, not a
//! line each, and journald's rate limit never drops the services' own
//! lines (who deployed what) because of it. What happened stays countable
//! in full in each service's `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often the services log what peers cause at will.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A log line that is written at most once an interval.
#[derive(Debug)]
pub struct ThrottledLog {
    /// What the summary line counts ("refused requests").
    subject: &'static str,
    /// The interval.
    interval: Duration,
    /// The interval running, if any, and what it held back so far: taken
    /// by every occurrence, never across an await or a write.
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Whether an interval runs (a line was written less than an interval ago).
    open: bool,
    /// The occurrences not logged in it, by kind.
    held_back: BTreeMap<String, u64>,
}

impl ThrottledLog {
    /// A throttle for lines about `subject`, one every `interval`.
    pub fn new(subject: &'static str, interval: Duration) -> Arc<ThrottledLog> {
        Arc::new(ThrottledLog {
            subject,
            interval,
            window: Mutex::default(),
        })
    }

    /// Notes an occurrence of `kind`; true when it is to be logged now (none
    /// was in the last interval), else it is counted for the interval's
    /// summary. Outside a tokio runtime every occurrence may be logged
    /// (nothing could write the summary).
    pub fn admit(self: &Arc<Self>, kind: &str) -> bool {
        let mut window = self.window();
        if window.open {
            *window.held_back.entry(kind.to_owned()).or_default() += 1;
            return false;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            window.open = true;
            let throttle = self.clone();
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(throttle.interval).await;
                    match throttle.end_interval() {
                        Some(summary) => log::warn!("{summary}"),
                        None => return,
                    }
                }
            });
        }
        true
    }

    /// Ends the interval: the line summing up what it held back, after
    /// which another interval runs; or `None` when it held nothing back,
    /// and the next occurrence is logged at once.
    fn end_interval(&self) -> Option<String> {
        let mut window = self.window();
        if window.held_back.is_empty() {
            window.open = false;
            return None;
        }
        let held_back = std::mem::take(&mut window.held_back);
        let total: u64 = held_back.values().sum();
        let kinds: Vec<String> = held_back
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        Some(format!(
            "{}: {total} more in the last {} s, not logged one by one ({})",
            self.subject,
            self.interval.as_secs(),
            kinds.join(", ")
        ))
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_the_first_then_sums_up_the_rest_once_an_interval() {
        let throttle = ThrottledLog::new("refused requests", Duration::from_secs(3600));
        assert!(throttle.admit("not_found"), "the first is logged");
        for _ in 0..1999 {
            assert!(!throttle.admit("not_found"), "the others wait");
        }
        assert!(!throttle.admit("bad_signature"));
        assert_eq!(
            throttle.end_interval().as_deref(),
            Some(
                "refused requests: 2000 more in the last 3600 s, not logged one by one \
                 (bad_signature 1, not_found 1999)"
            )
        );
        // Another interval runs: still held back, summed up at its end.
        assert!(!throttle.admit("not_found"));
        assert_eq!(
            throttle.end_interval().as_deref(),
            Some(
                "refused requests: 1 more in the last 3600 s, not logged one by one (not_found 1)"
            )
        );
        // A quiet interval ends the throttling: the next one is logged at once.
        assert_eq!(throttle.end_interval(), None);
        assert!(throttle.admit("not_found"));
    }

    #[tokio::test]
    async fn the_summary_comes_when_the_interval_ends() {
        let throttle = ThrottledLog::new("refused requests", Duration::from_millis(50));
        assert!(throttle.admit("not_found"));
        assert!(!throttle.admit("not_found"));
        // The interval's task took the count and another interval began;
        // it ends quiet, and the next occurrence is logged again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(throttle.admit("not_found"));
    }

    #[test]
    fn outside_a_runtime_every_occurrence_is_logged() {
        let throttle = ThrottledLog::new("refused requests", Duration::from_secs(60));
        assert!(throttle.admit("not_found"));
        assert!(throttle.admit("not_found"));
    }
}
