//! deployd, the host daemon: it accepts only verified deploy requests, pulls
//! the closure from its trusted caches, switches, rolls back when the switch
//! fails, and reports every step (records, events, status, metrics).
//!
//! `main.rs` only parses, loads, binds and calls [`start`] and [`api::serve`].

pub mod api;
pub mod channel_url;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod environment;
pub mod events;
pub mod host_key;
pub mod http_url;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod pull;
pub mod state;
pub mod system;

/// Test certificates made by `openssl`, shared with the process tests.
#[cfg(test)]
#[path = "../tests/support/certificates.rs"]
mod test_certificates;

use std::sync::Arc;

pub use config::{Config, ConfigError};
pub use daemon::{Daemon, OpenError};
pub use environment::Environment;

/// Opens the daemon (its `[tls]` certificate, its state) on a machine like
/// `environment` (see [`Environment::detect`]) and finishes a deploy a
/// previous run left unfinished (in the background).
pub async fn start(config: Config, environment: Environment) -> Result<Arc<Daemon>, OpenError> {
    let daemon = Daemon::open(config, environment)?;
    if let Some(id) = daemon.unfinished() {
        log::warn!(deploy_id = id.as_str(); "deploy {id} was unfinished at start; finishing it");
        daemon.revive(&id);
        pipeline::spawn(daemon.clone(), id);
    }
    Ok(daemon)
}
