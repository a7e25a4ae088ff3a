//! Changes made outside deployd, taken in without dropping a running deploy:
//!
//! - **SIGHUP** (`systemctl reload deployd`, which the NixOS module triggers
//!   when deployd's config changes): the config file is read and checked
//!   again and put in force whole (trusted keys, caches, health checks...);
//!   a bad one is refused, logged, and the running config kept. A deploy
//!   already running goes on with the config it started with. The `[tls]`
//!   certificate and key are read again (new paths, or the same files) and
//!   served from the next connection on; connections already open keep
//!   theirs. Whether the API speaks TLS at all is fixed at start.
//! - **A new running system not deployed by deployd** (`nixos-rebuild
//!   switch`): when its deployd unit runs another deployd (another store
//!   path, or another `--config`), this one restarts into it once idle. The
//!   module sets `restartIfChanged = false`, so no switch stops deployd
//!   midway; this is how a changed binary still takes over.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::config::{Config, ConfigError};
use crate::system::{read_link, runs_another_daemon};

/// How often the running system's link is read. It is replaced by a rename
/// in `/run`, which many other files share; a read every few seconds costs
/// less than waking for each of theirs.
const SYSTEM_POLL: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings that changed but take effect only at the next start.
    pub needs_restart: Vec<&'static str>,
}

impl Daemon {
    /// Reads and checks the config file again and, when it is valid, puts it
    /// in force, the `[tls]` certificate and key read again with it. Where
    /// it is bound (`listen`), what it keeps (`state_dir`, `history_limit`)
    /// and whether it serves HTTPS (`[tls]` present or not) stay as they
    /// are until the next start.
    pub fn reload_config(&self) -> Result<Reloaded, ConfigError> {
        let running = self.config();
        let mut config = Config::load(&running.path)?;
        let mut needs_restart = Vec::new();
        if config.file.listen != running.file.listen {
            needs_restart.push("listen");
            config.file.listen = running.file.listen;
        }
        if config.file.state_dir != running.file.state_dir {
            needs_restart.push("state_dir");
            config.file.state_dir = running.file.state_dir.clone();
        }
        if config.file.history_limit != running.file.history_limit {
            needs_restart.push("history_limit");
            config.file.history_limit = running.file.history_limit;
        }
        match (&self.tls, &config.file.tls) {
            // The pair is read now, before anything changes: one that does
            // not load refuses the whole config.
            (Some(certificate), Some(tls)) => {
                certificate
                    .use_files(tls.files())
                    .map_err(|source| ConfigError::Tls {
                        section: "[tls]",
                        source,
                    })?
            }
            (None, None) => {}
            // HTTPS turned on or off: the listener stays as it started.
            _ => {
                needs_restart.push("[tls]");
                config.file.tls = running.file.tls.clone();
            }
        }
        self.replace_config(config);
        Ok(Reloaded { needs_restart })
    }

    /// Restarts into the deployd the running system has, once no deploy runs:
    /// at once when idle, else when the running deploy is recorded.
    fn restart_when_idle(&self) {
        self.lifecycle.request_restart();
        if self.unfinished().is_none() {
            log::info!("restarting to run the deployd of the running system");
            self.lifecycle.shutdown_token().cancel();
        }
    }
}

/// Reloads the config on every SIGHUP until `shutdown`.
pub async fn reload_on_hangup(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        log::error!("cannot listen for SIGHUP; a changed config needs a restart");
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangups.recv() => if received.is_none() { return },
        }
        let path = daemon.config().path.clone();
        match daemon.reload_config() {
            Ok(reloaded) => {
                log::info!("reloaded {}", path.display());
                for setting in reloaded.needs_restart {
                    log::warn!(
                        "{setting} changed in {}: it takes effect when deployd restarts",
                        path.display()
                    );
                }
            }
            Err(error) => log::error!(
                "refused the changed {}; the running config stays in force: {}",
                path.display(),
                crate::api::chain(&error)
            ),
        }
    }
}

/// Watches the running system until `shutdown`: one switched to from outside
/// deployd whose deployd is another makes this one restart into it once idle.
pub async fn follow_running_system(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let current = daemon.config().file.activation.current_system.clone();
    let mut seen = read_link(&current);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SYSTEM_POLL) => {}
        }
        // A deploy's own switch is the deploy's to follow up (it asks for
        // the restart itself); what it leaves is looked at once it ended.
        if daemon.unfinished().is_some() {
            continue;
        }
        let now = read_link(&current);
        if now == seen {
            continue;
        }
        seen = now;
        let config = daemon.config();
        let Some(system) = &seen else { continue };
        if runs_another_daemon(
            Path::new(system),
            &config.file.activation.unit,
            &config.path,
        ) {
            log::info!("the running system {system} runs another deployd");
            daemon.restart_when_idle();
        }
    }
}
