//! A deploy whose record cannot be written when it ends (a full or broken
//! disk) still ends for everyone following it: its event stream sends the
//! end and `done`, instead of keep-alives for ever.

mod support;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::{api, Config, Daemon, Environment};
use deployd_protocol::Action;
use support::{config_text, deploy_envelope, key, now, stand_in_nix_store};
use tower::ServiceExt;

#[tokio::test]
async fn the_event_stream_ends_even_when_the_last_write_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = key("ops-1");
    // A fetch that waits until the test lets it fail.
    let gate = dir.path().join("gate");
    let fetch = stand_in_nix_store(
        dir.path(),
        &format!(
            "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.05; done\nexit 1\n",
            gate.display()
        ),
    );
    let text = config_text(dir.path(), &ops, "", Some(&fetch));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");

    let post = Request::post("/v1/deploy")
        .body(Body::from(deploy_envelope(
            &ops,
            "doomed",
            (now(), 60),
            Action::Switch,
        )))
        .expect("request");
    let answer = api::router(daemon.clone())
        .oneshot(post)
        .await
        .expect("infallible");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);

    let events = api::router(daemon.clone())
        .oneshot(
            Request::get("/v1/deploys/doomed/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(events.status(), StatusCode::OK);

    // The deploy's directory becomes a file: every write to it fails.
    let deploy_dir = dir.path().join("state/deploys/doomed");
    std::fs::remove_dir_all(&deploy_dir).expect("remove");
    std::fs::write(&deploy_dir, "").expect("a file in its place");
    std::fs::write(&gate, "").expect("let the fetch fail");

    // The stream ends with the deploy: read it whole, in bounded time.
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        axum::body::to_bytes(events.into_body(), 1 << 20),
    )
    .await;
    let seen = match read {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(error)) => panic!("reading the stream: {error}"),
        Err(_) => panic!("the event stream did not end"),
    };
    assert!(seen.contains("event: done"), "{seen}");
    assert!(seen.contains("failed"), "{seen}");
}
