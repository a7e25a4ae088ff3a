//! Quarantine through the router: a system whose deploy failed is refused
//! `quarantined` (409) with a message naming that deploy and the way
//! through; the refusal records nothing, so the very same request (same
//! nonce, same deploy id) signed again with `retry_failed` is accepted.
//! Status lists the quarantined path, `/metrics` counts it and the refusal;
//! `quarantine_s = 0` turns it off; `quarantined` is answered before `busy`,
//! and neither spends the request. The deploys meet a stand-in for
//! `nix-store` that refuses every fetch (a `failed` that changed nothing is
//! quarantined too).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::{Config, Daemon, Environment};
use deployd_protocol::{Action, DeployRequest, Message, Request as Signed, SecretKey};

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";

struct Host {
    daemon: Arc<Daemon>,
    ops: SecretKey,
    _dir: tempfile::TempDir,
}

fn host(top: &str) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    // A system named `slow` takes 3 s to fail: a deploy that runs a while.
    let nix_store = support::stand_in_nix_store(
        dir.path(),
        "#!/bin/sh\ncase \"$*\" in *slow*) sleep 3;; esac\n\
         echo 'nix-store stand-in: the cache is down' >&2\nexit 1\n",
    );
    let text = support::config_text(dir.path(), &ops, top, Some(&nix_store));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");
    Host {
        daemon,
        ops,
        _dir: dir,
    }
}

async fn send(host: &Host, request: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    support::answer(host.daemon.clone(), request).await
}

fn deploy_message(id: &str) -> Message {
    deploy_of(id, SYSTEM)
}

fn deploy_of(id: &str, system: &str) -> Message {
    let request = DeployRequest::new(
        id.parse().expect("id"),
        system.parse().expect("path"),
        Action::Switch,
    )
    .expect("random");
    Message::new(
        "sambirano".parse().expect("host"),
        Signed::Deploy(request),
        support::now(),
        60,
    )
}

fn with_retry_failed(mut message: Message) -> Message {
    if let Signed::Deploy(deploy) = &mut message.request {
        deploy.retry_failed = true;
    }
    message
}

fn post(host: &Host, message: &Message) -> Request<Body> {
    Request::post("/v1/deploy")
        .body(Body::from(message.sign(&[&host.ops]).to_json()))
        .expect("request")
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// Sends a deploy, expects it accepted, and waits for its end.
async fn deploy_and_wait(host: &Host, message: &Message) -> String {
    let (status, body, _) = send(host, post(host, message)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["deploy_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = host.daemon.deploy(&id).expect("recorded").record;
        if record.state.is_final() {
            return record.state.to_string();
        }
        assert!(Instant::now() < deadline, "{id} never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failed_system_is_refused_until_a_request_says_retry_failed() {
    let host = host("");
    let first = deploy_and_wait(&host, &deploy_message("first")).await;
    assert_eq!(first, "failed", "the stand-in refuses every fetch");

    let (status, body, _) = send(&host, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    let quarantined = body["quarantined"].as_array().expect("a list");
    assert_eq!(quarantined.len(), 1, "{body}");
    assert_eq!(quarantined[0]["store_path"], SYSTEM);
    assert_eq!(quarantined[0]["deploy_id"], "first");
    assert_eq!(quarantined[0]["state"], "failed");
    let ended = quarantined[0]["ended_at_ms"].as_u64().expect("ended");
    assert_eq!(
        quarantined[0]["until_ms"].as_u64(),
        Some(ended + 86_400_000)
    );

    // A fresh message for the same system: refused, naming the deploy.
    let second = deploy_message("second");
    let (status, body, _) = send(&host, post(&host, &second)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("quarantined")),
        "{body}"
    );
    let message = body["message"].as_str().expect("message");
    for part in [
        SYSTEM,
        "failed here",
        "(deploy first)",
        "push --retry-failed",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(host.daemon.deploy("second").is_none(), "nothing recorded");

    // The same request (its nonce and deploy id) with retry_failed: taken.
    let retry = with_retry_failed(second);
    let state = deploy_and_wait(&host, &retry).await;
    assert_eq!(state, "failed", "the cache is still down");

    let (_, _, metrics) = send(&host, get("/metrics")).await;
    assert!(
        metrics.contains("deployd_quarantined_store_paths 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("deployd_refused_total{code=\"quarantined\"} 1"),
        "{metrics}"
    );
    let (_, body, _) = send(&host, get("/v1/status")).await;
    assert_eq!(body["quarantined"][0]["deploy_id"], "second", "{body}");
}

#[tokio::test]
async fn quarantine_is_answered_before_busy_and_neither_spends_the_request() {
    let host = host("");
    deploy_and_wait(&host, &deploy_message("first")).await;
    let slow = deploy_of(
        "slow",
        "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-slow",
    );
    let (status, body, _) = send(&host, post(&host, &slow)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // While `slow` runs: the quarantined system is `quarantined`, not `busy`.
    let second = deploy_message("second");
    let (status, body, _) = send(&host, post(&host, &second)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("quarantined")),
        "{body}"
    );
    // With retry_failed, it waits its turn: `busy`, and nothing is spent.
    let retry = with_retry_failed(second);
    let (status, body, _) = send(&host, post(&host, &retry)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("busy")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host
        .daemon
        .deploy("slow")
        .is_some_and(|deploy| deploy.record.state.is_final())
    {
        assert!(Instant::now() < deadline, "slow never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The very same envelope once the host is free: taken.
    assert_eq!(deploy_and_wait(&host, &retry).await, "failed");
}

#[tokio::test]
async fn quarantine_s_zero_turns_it_off() {
    let host = host("quarantine_s = 0\n");
    deploy_and_wait(&host, &deploy_message("first")).await;
    let (status, body, _) = send(&host, post(&host, &deploy_message("second"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, body, _) = send(&host, get("/v1/status")).await;
    assert_eq!(body["quarantined"], serde_json::json!([]), "{body}");
    let (_, _, metrics) = send(&host, get("/metrics")).await;
    assert!(
        metrics.contains("deployd_quarantined_store_paths 0"),
        "{metrics}"
    );
}
