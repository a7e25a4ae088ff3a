//! `GET /v1/status` (the host's systems, generations and deploys),
//! `GET /metrics` (Prometheus text) and `GET /healthz` (always open: 200
//! when the daemon answers).

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use deployd_command::redact::mask_credentials;
use deployd_protocol::api::{DeploySummary, StatusResponse};

use crate::daemon::Daemon;
use crate::metrics::{render, Gauges};
use crate::system::{read_link, reboot_required, Profile};

/// The host's status.
pub async fn get_status(State(daemon): State<Arc<Daemon>>) -> Json<StatusResponse> {
    Json(status(&daemon))
}

/// Builds the status answer.
pub fn status(daemon: &Daemon) -> StatusResponse {
    let activation = &daemon.config().file.activation;
    let current_system = read_link(&activation.current_system);
    let (running, last) = daemon.running_and_last();
    let nix = &daemon.config().file.nix;
    StatusResponse {
        hostname: daemon.config().hostname.clone(),
        reboot_required: current_reboot_required(daemon, current_system.as_deref()),
        current_system,
        booted_system: read_link(&activation.booted_system),
        generations: Profile::new(&activation.system_profile).generations(),
        current_deploy: daemon.current_deploy(),
        active_deploy: running.as_ref().map(DeploySummary::from),
        last_deploy: last.as_ref().map(DeploySummary::from),
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        nix_version: daemon.nix_version.clone(),
        // Open to readers: no credentials, even from a config that
        // check-config did not see.
        substituters: nix
            .substituters
            .iter()
            .map(|url| mask_credentials(url).into_owned())
            .collect(),
        trusted_public_keys: nix.trusted_public_keys.clone(),
        quarantined: daemon.quarantined(),
        host_key: Some(daemon.host_key().public_key().to_string()),
    }
}

/// Whether the machine needs a reboot: the running system's kernel, initrd
/// or modules are not the booted ones, or the profile holds a system that
/// the last deploy left to take effect at the next boot (`boot`, or a new
/// init interface).
fn current_reboot_required(daemon: &Daemon, current: Option<&str>) -> bool {
    let config = daemon.config();
    let activation = &config.file.activation;
    let kernel_changed =
        current.is_some_and(|system| reboot_required(Path::new(system), &activation.booted_system));
    let pending = Profile::new(&activation.system_profile).current_system();
    let waits_for_boot = pending.as_deref() != current
        && daemon.running_and_last().1.is_some_and(|last| {
            last.reboot_required && Some(last.store_path.as_str()) == pending.as_deref()
        });
    kernel_changed || waits_for_boot
}

/// Prometheus metrics.
pub async fn get_metrics(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let current = read_link(&daemon.config().file.activation.current_system);
    let (running, _) = daemon.running_and_last();
    let gauges = Gauges {
        current_system: current.as_deref(),
        reboot_required: current_reboot_required(&daemon, current.as_deref()),
        deploying: running.is_some(),
        quarantined: daemon.quarantined().len(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&daemon.counters(), &gauges),
    )
}

/// Liveness.
pub async fn healthz() -> &'static str {
    "ok\n"
}
