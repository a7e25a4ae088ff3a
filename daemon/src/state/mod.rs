//! Everything the daemon keeps on disk under `state_dir`, written so that a
//! crash or power loss at any moment leaves it readable: each file is written
//! whole to a temporary name, synced, renamed over the old one, and the
//! directory synced.
//!
//! ```text
//! state_dir/
//!   nonces.json                 seen nonces, until they expire
//!   active.json                 the deploy that made the active system
//!   deploy-ids                  every deploy id ever used (one per line)
//!   deploys/<id>/record.json    a deploy's record and progress
//!   deploys/<id>/envelope       the envelope it came in (retries compare it)
//!   deploys/<id>/log            its full log
//!   deploys/<id>/switch-<n>.*   a detached switch's output, pid and exit status
//!   unreadable/<id>/            a deploy whose record could not be read at start
//!   gc-roots/                   roots for what was fetched or `test`-activated
//! ```

mod files;
mod nonces;
mod records;

pub use files::{read_json, write_atomically, write_json};
pub use nonces::{DiskNonceStore, PendingNonce, VerifyingNonces};
pub use records::{ActiveDeploy, DeployStore, Progress, StoredDeploy, SwitchLaunch};

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
