//! What a host says about a system it was not sent (`GET /v1/plan`, for
//! `push plan`), changing nothing: the paths of its closure the host lacks
//! and their size (see [`missing`]), the closure of the system it runs (see
//! [`closure`]), the running system's switch inhibitors, and the booted
//! system's boot links. The sender compares them with the system it built.
//!
//! One plan at a time per host (a second is `busy`): each one asks the
//! caches about a whole closure.

mod closure;
mod missing;

use std::path::Path;

use deployd_command::CommandError;
use deployd_protocol::plan::{PlanResponse, RunningSystem, MAX_INHIBITORS_BYTES};
use deployd_protocol::StorePath;

pub use missing::parse_missing;

use crate::config::Config;
use crate::system::{boot_links, read_link};

/// Why a host could not make a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A Nix query failed.
    #[error("asking Nix")]
    Nix(#[from] CommandError),
    /// Nix printed a store path that is not one.
    #[error("Nix printed a malformed store path")]
    BadPath(#[from] deployd_protocol::StorePathError),
    /// Nix printed something unreadable.
    #[error("cannot read Nix's answer: {0}")]
    Unreadable(String),
}

/// The plan of `system` on the host that `config` describes.
pub async fn plan(config: &Config, system: &StorePath) -> Result<PlanResponse, PlanError> {
    let missing = missing::of(config, system).await?;
    let activation = &config.file.activation;
    let running = match read_link(&activation.current_system) {
        Some(running) => Some(running_system(config, &running).await?),
        None => None,
    };
    let booted_links = activation
        .booted_system
        .exists()
        .then(|| boot_links(&activation.booted_system));
    Ok(PlanResponse {
        hostname: config.hostname.clone(),
        store_path: system.clone(),
        missing,
        running,
        booted_links,
    })
}

/// The running system (`current`, the target of `/run/current-system`):
/// its closure and its switch inhibitors as written.
async fn running_system(config: &Config, current: &str) -> Result<RunningSystem, PlanError> {
    let store_path: StorePath = current.parse()?;
    let closure = closure::of(config, &store_path).await?;
    Ok(RunningSystem {
        switch_inhibitors: read_inhibitors(&Path::new(current).join("switch-inhibitors")),
        store_path,
        closure,
    })
}

/// A system's `switch-inhibitors` file (nixpkgs `switchable-system.nix`),
/// if it has one no larger than [`MAX_INHIBITORS_BYTES`].
fn read_inhibitors(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    (text.len() <= MAX_INHIBITORS_BYTES).then_some(text)
}
