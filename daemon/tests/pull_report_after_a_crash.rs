//! A deploy recorded from a push serve channel just before the daemon
//! stopped (its report not yet marked pending) is still reported: the next
//! poll finds its state recorded and starts its reporter
//! (docs/src/design/channels.md, "Reports"). The channel is a loopback
//! server that answers as push serve's channel API does; the deploy meets
//! a stand-in for `nix-store` that refuses every fetch.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use deployd::daemon::{Channel, DesiredAdmission};
use deployd::state::ChannelSequence;
use deployd::{Config, Daemon, Environment};
use deployd_protocol::{Action, DeployRequest, DesiredState, SecretKey};
use tokio_util::sync::CancellationToken;

/// The state the channel serves, and the report paths posted to.
#[derive(Clone, Default)]
struct ChannelState {
    desired: Arc<Vec<u8>>,
    reports: Arc<Mutex<Vec<String>>>,
}

async fn state_answer(State(channel): State<ChannelState>, uri: Uri) -> impl IntoResponse {
    if uri.query().is_some_and(|query| query.contains("wait=")) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        return (
            StatusCode::NOT_MODIFIED,
            [("Deployd-Channel", "push-serve")],
            Vec::new(),
        );
    }
    (
        StatusCode::OK,
        [("Deployd-Channel", "push-serve")],
        channel.desired.to_vec(),
    )
}

async fn report_answer(State(channel): State<ChannelState>, uri: Uri) -> impl IntoResponse {
    channel.reports.lock().expect("lock").push(uri.to_string());
    (StatusCode::NO_CONTENT, [("Deployd-Channel", "push-serve")])
}

fn open(dir: &Path, ops: &SecretKey, pull: &str) -> Arc<Daemon> {
    let nix_store = support::stand_in_nix_store(
        dir,
        "#!/bin/sh\necho 'nix-store stand-in: the cache is down' >&2\nexit 1\n",
    );
    let mut text = support::config_text(dir, ops, "", Some(&nix_store));
    text.push_str(pull);
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    Daemon::open(config, Environment::default()).expect("daemon")
}

#[tokio::test]
async fn a_state_recorded_before_a_crash_is_still_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let deploy = DeployRequest::new(
        "pulled-1".parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        Action::Switch,
    )
    .expect("random");
    let bytes = DesiredState::new(
        "sambirano".parse().expect("host"),
        deploy,
        1,
        support::now(),
        3600,
    )
    .sign(&[&ops])
    .to_json();

    // Recorded, then the daemon stopped before the sequence, the nonce and
    // the report marker were written.
    let state_dir = dir.path().join("state");
    let nonces = state_dir.join("nonces.json");
    let daemon = open(dir.path(), &ops, "");
    let nonces_before = std::fs::read(&nonces).ok();
    let mut sequence = ChannelSequence::load(&state_dir, "x").expect("sequence file");
    let admitted = daemon.accept_desired(
        &bytes,
        Channel {
            url: "x",
            sequence: &mut sequence,
        },
    );
    assert!(
        matches!(admitted, Ok(DesiredAdmission::New(_))),
        "{admitted:?}"
    );
    drop(daemon);
    std::fs::remove_dir_all(state_dir.join("pull")).expect("forget the sequence");
    match &nonces_before {
        Some(bytes) => std::fs::write(&nonces, bytes).expect("old nonces"),
        None => std::fs::remove_file(&nonces).expect("no nonces yet"),
    }

    let channel = ChannelState {
        desired: Arc::new(bytes),
        reports: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/channel/hosts/{file}", axum::routing::get(state_answer))
        .route(
            "/channel/reports/{host}",
            axum::routing::post(report_answer),
        )
        .with_state(channel.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let daemon = open(
        dir.path(),
        &ops,
        &format!("[pull]\nchannels = [\"http://127.0.0.1:{port}/channel\"]\ninterval_s = 3600\n"),
    );
    let stop = CancellationToken::new();
    let pulling = tokio::spawn(deployd::pull::run(daemon, stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reports = loop {
        let reports = channel.reports.lock().expect("lock").clone();
        if !reports.is_empty() || tokio::time::Instant::now() > deadline {
            break reports;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    pulling.await.expect("the pullers end");
    server.abort();

    assert_eq!(
        reports.first().map(String::as_str),
        Some("/channel/reports/sambirano"),
        "the recorded deploy is reported: {reports:?}"
    );
}
