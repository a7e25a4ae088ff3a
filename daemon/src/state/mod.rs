//! Everything the daemon keeps on disk under `state_dir`, written so that a
//! crash or power loss at any moment leaves it readable: each file is written
//! whole to a temporary name, synced, renamed over the old one, and the
//! directory synced.
//!
//! ```text
//! state_dir/
//!   nonces.json                 seen nonces, until they expire
//!   active.json                 the deploy that made the active system
//!   deploy-ids                  the most recent deploy ids used (one per
//!                               line, oldest first, bounded)
//!   deploys/<id>/record.json    a deploy's record and progress
//!   deploys/<id>/envelope       the envelope it came in (retries compare it)
//!   deploys/<id>/log            its full log
//!   deploys/<id>/switch-<n>.*   a detached switch's output, pid, exit status
//!                               and how much output was streamed
//!   nonces-lost.json            when an unreadable nonces.json was set aside
//!   unreadable/                 what could not be read at start (a deploy's
//!                               directory, nonces.json, active.json)
//!   gc-roots/                   roots for what was fetched or `test`-activated
//!   host-key.secret             the host key reports are signed with (0600)
//!   pull/<digest>.json          per channel: the last sequence applied
//!   pull/<digest>.report.json   per channel: a final report not yet acknowledged
//! ```

mod channels;
mod files;
mod nonces;
mod quarantine;
mod records;
mod used_ids;

pub use channels::{channel_file_stem, AppliedMark, ChannelSequence, PendingReport, ReportMarker};
pub use files::{read_json, write_atomically, write_json};
pub use nonces::{DiskNonceStore, PendingNonce, VerifyingNonces};
pub use quarantine::{QuarantineIndex, MAX_QUARANTINED};
pub use records::{ActiveDeploy, DeployStore, Progress, StoredDeploy, SwitchLaunch};

/// Which of a deploy's two switches: the new system's, or the one back to
/// the previous system. Each has its own files and transient unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchKind {
    /// The switch to the deploy's system.
    Forward,
    /// The switch back to the previous system.
    Rollback,
}

impl SwitchKind {
    /// Its number in file and unit names (`switch-1.*`, `...-2`), kept as
    /// earlier daemons wrote them.
    pub fn number(self) -> u8 {
        match self {
            SwitchKind::Forward => 1,
            SwitchKind::Rollback => 2,
        }
    }
}

/// Where a detached switch writes: its output, its exit status, its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchFiles {
    /// Its output (`switch-<n>.log`).
    pub log_file: std::path::PathBuf,
    /// Its exit status, when it ends (`switch-<n>.status`).
    pub status_file: std::path::PathBuf,
    /// Its wrapper's pid, when it starts (`switch-<n>.pid`).
    pub pid_file: std::path::PathBuf,
}

/// Moves an unreadable state file or directory to `state_dir/unreadable/`
/// (so the daemon starts, and the bytes are kept for a person to look at);
/// says where it went.
pub fn move_aside(state_dir: &std::path::Path, path: &std::path::Path) -> String {
    let dir = state_dir.join("unreadable");
    let name = path.file_name().unwrap_or_default();
    let aside = dir.join(name);
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(path, &aside)) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(error) => format!("could not be moved aside: {error}"),
    }
}

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something else than expected.
    #[error("{path} is not valid")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}
