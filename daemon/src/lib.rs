//! deployd, the host daemon: it accepts only verified deploy requests, pulls
//! the closure from its trusted caches, switches, rolls back when the switch
//! fails, and reports every step (records, events, status, metrics).
//!
//! `main.rs` only parses, loads, binds and calls [`start`] and [`api::serve`].

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod state;
pub mod system;

use std::sync::Arc;

pub use config::{Config, ConfigError};
pub use daemon::Daemon;

/// Opens the daemon's state and finishes a deploy a previous run left
/// unfinished (in the background).
pub async fn start(config: Config) -> Result<Arc<Daemon>, state::StateError> {
    let version = deployd_command::run(&pipeline::nix_version_invocation(&config), |_| {})
        .await
        .map(|captured| captured.stdout.trim().to_owned())
        .map_err(|error| log::warn!("cannot read Nix's version: {error}"))
        .ok();
    let daemon = Daemon::open(config, version)?;
    if let Some(id) = daemon.unfinished() {
        log::warn!(deploy_id = id.as_str(); "deploy {id} was unfinished at start; finishing it");
        daemon.revive(&id);
        pipeline::spawn(daemon.clone(), id);
    }
    Ok(daemon)
}
