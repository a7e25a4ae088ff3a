//! What wakes the wait for a detached switch: an inotify watch on the
//! deploy's directory, woken when the switch's output, pid or status file is
//! written, closed or moved into place, so its output and its end are seen
//! as they happen instead of at the next look of a poll.
//!
//! inotify cannot tell everything: a switch whose process vanishes without
//! writing its status (killed, or the machine's power cut while it ran)
//! changes no file, and the start grace and the switch timeout are time
//! passing. So the wait also wakes after a slow fallback period, and only
//! then looks when nothing changed. Where the watch cannot be set up (no
//! inotify, no instances left), the fallback timer alone drives the wait.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

/// The bytes read from inotify at once (a few dozen events).
const EVENT_BUFFER_BYTES: usize = 4096;

/// Wakes when one of a switch's files changes, or after the fallback period.
pub struct SwitchFilesWatch {
    /// The directory's events; `None` when inotify is not available (or
    /// broke): the fallback timer alone then wakes the wait.
    events: Option<inotify::EventStream<Vec<u8>>>,
    /// The names of the files whose changes wake the wait (the daemon's own
    /// writes in the same directory, its log and record, do not).
    names: Vec<OsString>,
    /// The longest the wait sleeps without a change.
    fallback: Duration,
}

impl SwitchFilesWatch {
    /// Watches the directory of `files` (all in one directory) for changes
    /// to them. Set it up before the first look at the files, so that a
    /// change between that look and the wait still wakes it.
    pub fn new(files: &[&Path], fallback: Duration) -> Self {
        let names = files
            .iter()
            .filter_map(|file| file.file_name().map(ToOwned::to_owned))
            .collect();
        let dir = files
            .first()
            .and_then(|file| file.parent())
            .unwrap_or(Path::new("."));
        let events = match watch(dir) {
            Ok(events) => Some(events),
            Err(error) => {
                log::warn!(
                    "cannot watch {} ({error}); looking at the switch every {fallback:?} instead",
                    dir.display()
                );
                None
            }
        };
        SwitchFilesWatch {
            events,
            names,
            fallback,
        }
    }

    /// Waits until one of the files changed since the last call, or the
    /// fallback period passed. Every change already queued is taken at once,
    /// so a burst of output wakes the wait once, not once per write.
    pub async fn changed(&mut self) {
        let Some(events) = &mut self.events else {
            tokio::time::sleep(self.fallback).await;
            return;
        };
        let names = &self.names;
        let woken = tokio::select! {
            woken = next_change(events, names) => woken,
            () = tokio::time::sleep(self.fallback) => return,
        };
        match woken {
            Ok(()) => {
                // Take what else is already there without waiting for more.
                while let Some(Some(Ok(_))) = events.next().now_or_never() {}
            }
            Err(error) => {
                log::warn!(
                    "the switch's watch broke ({error}); looking at it every {:?} instead",
                    self.fallback
                );
                self.events = None;
            }
        }
    }
}

/// An inotify watch on `dir` for files written, closed after writing, or
/// moved in.
fn watch(dir: &Path) -> std::io::Result<inotify::EventStream<Vec<u8>>> {
    let inotify = inotify::Inotify::init()?;
    inotify.watches().add(
        dir,
        inotify::WatchMask::MODIFY
            | inotify::WatchMask::CLOSE_WRITE
            | inotify::WatchMask::CREATE
            | inotify::WatchMask::MOVED_TO,
    )?;
    inotify.into_event_stream(vec![0u8; EVENT_BUFFER_BYTES])
}

/// The next event about one of `names`, or one about no file (the queue
/// overflowed, the watch was removed): either may hide a change.
async fn next_change(
    events: &mut inotify::EventStream<Vec<u8>>,
    names: &[OsString],
) -> std::io::Result<()> {
    loop {
        match events.next().await {
            Some(Ok(event)) => match &event.name {
                Some(name) if !names.contains(name) => continue,
                _ => return Ok(()),
            },
            Some(Err(error)) => return Err(error),
            None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_to_a_watched_file_wakes_it_and_others_do_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = dir.path().join("switch-1.status");
        let fallback = Duration::from_secs(60);
        let mut watch = SwitchFilesWatch::new(&[&status], fallback);
        assert!(watch.events.is_some(), "no inotify here");

        // Another file of the directory (the deploy's own log) does not wake it.
        std::fs::write(dir.path().join("log"), "a line\n").expect("write");
        let woken = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(woken.is_err(), "woken by another file");

        let started = std::time::Instant::now();
        std::fs::write(&status, "0\n").expect("write");
        tokio::time::timeout(fallback / 2, watch.changed())
            .await
            .expect("woken by the status file");
        assert!(started.elapsed() < fallback / 2);
    }

    #[tokio::test]
    async fn without_a_watch_the_fallback_wakes_it() {
        let mut watch = SwitchFilesWatch {
            events: None,
            names: Vec::new(),
            fallback: Duration::from_millis(50),
        };
        tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .expect("woken by the timer");
    }
}
