//! What the daemon finds about the machine it runs on, at start: Nix's
//! version (for the status answer) and whether systemd runs the machine
//! (switches then run in transient units). Asked once, by `main`; tests
//! give it instead.

use std::time::Duration;

use deployd_command::Invocation;

use crate::config::Config;

/// The machine, as the daemon found it at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// What `nix-store --version` said.
    pub nix_version: Option<String>,
    /// Whether systemd runs this machine.
    pub systemd: bool,
}

impl Environment {
    /// Asks the machine: Nix's version, and whether `/run/systemd/system` is there.
    pub async fn detect(config: &Config) -> Environment {
        let nix_version = deployd_command::run(&version_invocation(config), |_| {})
            .await
            .map(|captured| captured.stdout.trim().to_owned())
            .map_err(|error| log::warn!("cannot read Nix's version: {error}"))
            .ok();
        Environment {
            nix_version,
            systemd: std::path::Path::new("/run/systemd/system").is_dir(),
        }
    }
}

/// `nix-store --version`, with the configured program.
fn version_invocation(config: &Config) -> Invocation {
    Invocation::new(
        &config.file.nix.nix_store,
        ["--version"],
        Duration::from_secs(10),
    )
}
