//! What the daemon's integration tests share: a config over a temporary
//! state directory trusting one deploy key, a named stand-in for
//! `nix-store`, signed deploy envelopes, test certificates, and the real
//! daemon as a child process.

#![allow(dead_code)]

pub mod certificates;
pub mod running;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::StatusCode;
use deployd_protocol::{Action, DeployRequest, Message, Request, SecretKey};
use tower::ServiceExt;

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A deploy key.
pub fn key(name: &str) -> SecretKey {
    SecretKey::generate(name.parse().expect("name")).expect("random")
}

/// A daemon config for host `sambirano` over `dir`: state, profile and
/// system links under it, trusting `ops`, an unreachable cache; `top` is
/// put first (`listen`, ...), and `nix_store` replaces Nix's when given.
pub fn config_text(dir: &Path, ops: &SecretKey, top: &str, nix_store: Option<&Path>) -> String {
    let cache = key("cache-1");
    let path = |name: &str| dir.join(name).display().to_string();
    let nix_store = nix_store.map_or(String::new(), |program| {
        format!("nix_store = \"{}\"\n", program.display())
    });
    format!(
        "{top}hostname = \"sambirano\"\nstate_dir = \"{}\"\n\
         [[trusted_keys]]\nkey = \"{}\"\n\
         [nix]\n{nix_store}substituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
         [activation]\nsystem_profile = \"{}\"\ncurrent_system = \"{}\"\nbooted_system = \"{}\"\n",
        path("state"),
        ops.public_key(),
        cache.public_key(),
        path("profiles/system"),
        path("current-system"),
        path("booted-system"),
    )
}

/// Writes `script` as an executable stand-in for `nix-store` in `dir`.
pub fn stand_in_nix_store(dir: &Path, script: &str) -> PathBuf {
    let program = dir.join("nix-store");
    std::fs::write(&program, script).expect("stand-in");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    program
}

/// A deploy of a toy system to `sambirano` as `id`, issued at `issued_at`
/// and valid `window_s` seconds, signed by `ops`.
pub fn deploy_envelope(
    ops: &SecretKey,
    id: &str,
    (issued_at, window_s): (u64, u64),
    action: Action,
) -> Vec<u8> {
    let request = DeployRequest::new(
        id.parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        action,
    )
    .expect("random");
    Message::new(
        "sambirano".parse().expect("host"),
        Request::Deploy(request),
        issued_at,
        window_s,
    )
    .sign(&[ops])
    .to_json()
}

/// Asks `daemon`'s router, without a network: the status, the body as
/// JSON (null when it is not JSON) and as text.
pub async fn answer(
    daemon: std::sync::Arc<deployd::Daemon>,
    request: axum::http::Request<Body>,
) -> (StatusCode, serde_json::Value, String) {
    let response = deployd::api::router(daemon)
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or_default(),
        text,
    )
}
