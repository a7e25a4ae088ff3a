//! What a fast fetch has done, counted by its tasks and shown in the
//! deploy's log at most once a second: `deployd: fetched 120 of 301 paths,
//! 20.1 of 50.0 MB`. Totals grow as the walk finds paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters shared by the walk and its downloads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Paths to fetch, found so far.
    paths_total: AtomicU64,
    /// Paths whose NAR is staged.
    paths_done: AtomicU64,
    /// Bytes of NAR files to fetch, found so far.
    bytes_total: AtomicU64,
    /// Bytes of NAR files received (less those of transfers begun again).
    bytes_done: AtomicU64,
    /// Lines for the deploy's log not yet shown (retries).
    notes: Mutex<Vec<String>>,
}

impl Progress {
    /// One more path to fetch, of `bytes`.
    pub fn found(&self, bytes: u64) {
        self.paths_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One path staged.
    pub fn staged(&self) {
        self.paths_done.fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` more received.
    pub fn bytes_done(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` received by a transfer that starts again.
    pub fn bytes_undone(&self, bytes: u64) {
        self.bytes_done.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A line for the deploy's log.
    pub fn note(&self, line: String) {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(line);
    }

    /// The lines noted since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .notes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The progress line.
    pub fn line(&self) -> String {
        let mb = |bytes: &AtomicU64| bytes.load(Ordering::Relaxed) as f64 / 1e6;
        format!(
            "deployd: fetched {} of {} paths, {:.1} of {:.1} MB",
            self.paths_done.load(Ordering::Relaxed),
            self.paths_total.load(Ordering::Relaxed),
            mb(&self.bytes_done),
            mb(&self.bytes_total),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line() {
        let progress = Progress::default();
        progress.found(30_000_000);
        progress.found(20_000_000);
        progress.bytes_done(25_000_000);
        progress.bytes_undone(4_900_000);
        progress.staged();
        assert_eq!(
            progress.line(),
            "deployd: fetched 1 of 2 paths, 20.1 of 50.0 MB"
        );
        progress.note("a".into());
        assert_eq!(progress.take_notes(), ["a"]);
        assert!(progress.take_notes().is_empty());
    }
}
