//! A host whose channel turns out to be push serve long-polls it at once,
//! not after `interval_s`: after a start (or a restart) whose first answer
//! is "nothing for you" (404) from push serve, the next request is a long
//! poll sent right away, so the next rollout reaches the host in seconds
//! however long its interval is (docs/src/design/channels.md). The channel
//! here is a loopback server that answers as push serve's channel API does
//! (`Deployd-Channel: push-serve` on every answer; 404 when it holds no
//! state; 304 when a long poll ends with nothing newer). A channel that
//! answers 304 at once does not make the host spin.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::IntoResponse;
use deployd::{Config, Daemon, Environment};
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<Vec<String>>>;

async fn channel_answer(State(seen): State<Seen>, uri: Uri) -> impl IntoResponse {
    let long_poll = uri.query().is_some_and(|query| query.contains("wait="));
    seen.lock().expect("lock").push(uri.to_string());
    let status = if long_poll {
        // push serve holds a long poll until its wait ends; a short hold
        // keeps the test quick.
        tokio::time::sleep(Duration::from_millis(200)).await;
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::NOT_FOUND
    };
    (status, [("Deployd-Channel", "push-serve")], "")
}

#[tokio::test]
async fn the_first_answer_from_push_serve_is_followed_by_a_long_poll_at_once() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/channel/hosts/{file}", axum::routing::get(channel_answer))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let mut text = support::config_text(dir.path(), &ops, "", None);
    text.push_str(&format!(
        "[pull]\nchannels = [\"http://127.0.0.1:{port}/channel\"]\ninterval_s = 3600\n"
    ));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");
    let stop = CancellationToken::new();
    let pulling = tokio::spawn(deployd::pull::run(daemon, stop.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let requests = loop {
        let requests = seen.lock().expect("lock").clone();
        if requests.len() >= 3 || tokio::time::Instant::now() > deadline {
            break requests;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    pulling.await.expect("the pullers end");
    server.abort();

    assert!(
        requests.len() >= 3,
        "with a one-hour interval: {requests:?}"
    );
    assert_eq!(requests[0], "/channel/hosts/sambirano.json", "{requests:?}");
    for long_poll in &requests[1..3] {
        assert!(
            long_poll.starts_with("/channel/hosts/sambirano.json?after=0&wait="),
            "{requests:?}"
        );
    }
}

async fn not_modified_at_once(State(seen): State<Seen>, uri: Uri) -> impl IntoResponse {
    seen.lock().expect("lock").push(uri.to_string());
    (
        StatusCode::NOT_MODIFIED,
        [("Deployd-Channel", "push-serve")],
        "",
    )
}

#[tokio::test]
async fn a_channel_that_answers_304_at_once_is_not_polled_in_a_loop() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/channel/hosts/{file}",
            axum::routing::get(not_modified_at_once),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let mut text = support::config_text(dir.path(), &ops, "", None);
    text.push_str(&format!(
        "[pull]\nchannels = [\"http://127.0.0.1:{port}/channel\"]\ninterval_s = 3600\n"
    ));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");
    let stop = CancellationToken::new();
    let pulling = tokio::spawn(deployd::pull::run(daemon, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    pulling.await.expect("the pullers end");
    server.abort();

    let requests = seen.lock().expect("lock").clone();
    assert!(
        requests.len() >= 2 && requests.len() <= 5,
        "in 3 s: {requests:?}"
    );
    assert!(
        requests[1].contains("wait="),
        "push serve is long-polled: {requests:?}"
    );
}
