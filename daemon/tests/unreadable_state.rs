//! An unreadable `nonces.json` or `active.json` does not stop the daemon
//! from starting: the file is set aside under `unreadable/` and the daemon
//! runs. With its nonces lost, a message issued before that moment (which
//! may have been seen) is refused as replayed; a new one is taken.

mod support;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::{api, Config, Daemon, Environment};
use deployd_protocol::{Action, SecretKey};
use support::{config_text, deploy_envelope, now};
use tower::ServiceExt;

/// A daemon over `dir`'s state, trusting `ops`.
fn open(dir: &Path, ops: &SecretKey) -> Result<Arc<Daemon>, deployd::OpenError> {
    let text = config_text(dir, ops, "", None);
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    Daemon::open(config, Environment::default())
}

/// POSTs a deploy issued at `issued_at`; returns the status.
async fn deploy(daemon: &Arc<Daemon>, ops: &SecretKey, id: &str, issued_at: u64) -> StatusCode {
    let request = Request::post("/v1/deploy")
        .body(Body::from(deploy_envelope(
            ops,
            id,
            (issued_at, 300),
            Action::DryActivate,
        )))
        .expect("request");
    api::router(daemon.clone())
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn an_unreadable_nonce_file_is_set_aside_and_older_messages_count_as_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    std::fs::create_dir_all(dir.path().join("state")).expect("dir");
    std::fs::write(dir.path().join("state/nonces.json"), "{\"torn").expect("write");
    let issued_before = now() - 5;
    let daemon = open(dir.path(), &ops).expect("the daemon starts");
    assert!(dir.path().join("state/unreadable/nonces.json").exists());

    assert_eq!(
        deploy(&daemon, &ops, "old", issued_before).await,
        StatusCode::CONFLICT,
        "a message that may have been seen was taken"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        deploy(&daemon, &ops, "new", now()).await,
        StatusCode::ACCEPTED
    );
    drop(daemon);

    // Restarted within the window, it still refuses the old message.
    let daemon = open(dir.path(), &ops).expect("the daemon starts again");
    assert_eq!(
        deploy(&daemon, &ops, "old-again", issued_before).await,
        StatusCode::CONFLICT
    );
}

#[test]
fn an_unreadable_active_file_is_set_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    std::fs::create_dir_all(dir.path().join("state")).expect("dir");
    std::fs::write(dir.path().join("state/active.json"), "not json").expect("write");
    let daemon = open(dir.path(), &ops).expect("the daemon starts");
    assert!(dir.path().join("state/unreadable/active.json").exists());
    drop(daemon);
}
