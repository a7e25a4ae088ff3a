//! The router, through `tower::ServiceExt::oneshot`, without a network:
//! signed reads, the body limit, unknown routes and deploys, history, and
//! the metrics text. The deploys these tests start meet a named stand-in
//! for `nix-store` that refuses every fetch, never the machine's Nix.

mod support;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd::{api, Config, Daemon, Environment};
use deployd_protocol::{Message, ReadRequest, Request as Signed, SecretKey};
use tower::ServiceExt;

struct Host {
    daemon: Arc<Daemon>,
    ops: SecretKey,
    reader: SecretKey,
    _dir: tempfile::TempDir,
}

fn host(signed_reads: bool) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let reader = SecretKey::generate("reader-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let nix_store = support::stand_in_nix_store(
        dir.path(),
        "#!/bin/sh\necho 'nix-store stand-in: this test has no cache' >&2\nexit 1\n",
    );
    let text = format!(
        "hostname = \"sambirano\"\nstate_dir = \"{}\"\nread_requires_signature = {signed_reads}\n\
         [[trusted_keys]]\nkey = \"{}\"\nmay = [\"deploy\"]\n\
         [[trusted_keys]]\nkey = \"{}\"\nmay = [\"read\"]\n\
         [nix]\nnix_store = \"{}\"\nsubstituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
         [activation]\nsystem_profile = \"{}\"\ncurrent_system = \"{}\"\nbooted_system = \"{}\"\n",
        path("state"),
        ops.public_key(),
        reader.public_key(),
        nix_store.display(),
        cache.public_key(),
        path("profiles/system"),
        path("current-system"),
        path("booted-system"),
    );
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");
    Host {
        daemon,
        ops,
        reader,
        _dir: dir,
    }
}

async fn send(host: &Host, request: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    support::answer(host.daemon.clone(), request).await
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

fn signed_get(path: &str, key: &SecretKey, signed_path: &str) -> Request<Body> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let message = Message::new(
        "sambirano".parse().expect("host"),
        Signed::Read(ReadRequest::new("GET", signed_path)),
        now,
        60,
    );
    let header = format!("DSSE {}", STANDARD.encode(message.sign(&[key]).to_json()));
    Request::get(path)
        .header("authorization", header)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn open_reads_need_no_signature() {
    let host = host(false);
    let (status, body, _) = send(&host, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hostname"], "sambirano");
    let (status, body, _) = send(&host, get("/v1/deploys?limit=5")).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!([])));
}

#[tokio::test]
async fn signed_reads_are_enforced() {
    let host = host(true);
    let (status, body, _) = send(&host, get("/v1/status")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );

    let (status, body, _) = send(&host, signed_get("/v1/status", &host.reader, "/v1/status")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hostname"], "sambirano");

    // Signed for another path, or by a key that may not read.
    let (status, body, _) =
        send(&host, signed_get("/v1/status", &host.reader, "/v1/deploys")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body, _) = send(&host, signed_get("/v1/status", &host.ops, "/v1/status")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body, _) = send(&host, signed_get("/metrics", &host.reader, "/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The query is part of what is signed.
    let (status, _, _) = send(
        &host,
        signed_get("/v1/deploys?limit=1", &host.reader, "/v1/deploys?limit=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(
        &host,
        signed_get("/v1/deploys?limit=999", &host.reader, "/v1/deploys?limit=1"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // /healthz stays open.
    let (status, _, text) = send(&host, get("/healthz")).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok\n"));
}

#[tokio::test]
async fn limits_and_unknowns() {
    let host = host(false);
    let huge = Request::post("/v1/deploy")
        .body(Body::from(vec![
            b' ';
            deployd_protocol::MAX_ENVELOPE_BYTES + 1
        ]))
        .expect("request");
    let (status, body, _) = send(&host, huge).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    let (status, body, _) = send(&host, get("/v1/deploys/nope")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body, _) = send(&host, get("/v2/anything")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body, _) = send(&host, get("/v1/deploys?limit=-1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );

    let unsigned = Request::post("/v1/deploy")
        .body(Body::from("{}"))
        .expect("request");
    let (status, body, _) = send(&host, unsigned).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let host = host(false);
    let (status, _, text) = send(&host, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("# TYPE deployd_deploys_total counter"),
        "{text}"
    );
    assert!(text.contains("deployd_deploy_in_progress 0"), "{text}");
    assert!(text.contains("deployd_reboot_required 0"), "{text}");
}

fn signed_deploy(id: &str) -> Message {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let request = deployd_protocol::DeployRequest::new(
        id.parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        deployd_protocol::Action::Switch,
    )
    .expect("random");
    Message::new(
        "sambirano".parse().expect("host"),
        Signed::Deploy(request),
        now,
        60,
    )
}

fn post(body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/deploy")
        .body(Body::from(body))
        .expect("request")
}

#[tokio::test]
async fn accept_retry_and_replays() {
    let host = host(false);
    let message = signed_deploy("first");
    let bytes = message.sign(&[&host.ops]).to_json();
    let (status, body, _) = send(&host, post(bytes.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["deploy_id"], "first");
    assert_eq!(body["status_url"], "/v1/deploys/first");

    // The very same envelope: the same deploy.
    let (status, body, _) = send(&host, post(bytes)).await;
    assert_eq!(
        (status, body["deploy_id"].as_str()),
        (StatusCode::ACCEPTED, Some("first"))
    );

    // Another message with the same nonce.
    let mut reused = signed_deploy("second");
    if let (Signed::Deploy(new), Signed::Deploy(old)) = (&mut reused.request, &message.request) {
        new.nonce = old.nonce.clone();
    }
    let (status, body, _) = send(&host, post(reused.sign(&[&host.ops]).to_json())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("replayed")),
        "{body}"
    );

    // The same deploy id with a fresh nonce.
    let again = signed_deploy("first").sign(&[&host.ops]).to_json();
    let (status, body, _) = send(&host, post(again)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("replayed")),
        "{body}"
    );

    // A confirm of a deploy that does not wait for one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let confirm = Message::new(
        "sambirano".parse().expect("host"),
        Signed::Confirm(
            deployd_protocol::DeployRef::new("first".parse().expect("id")).expect("nonce"),
        ),
        now,
        60,
    );
    let request = Request::post("/v1/deploys/first/confirm")
        .body(Body::from(confirm.sign(&[&host.ops]).to_json()))
        .expect("request");
    let (status, body, _) = send(&host, request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{body}"
    );
    // The same confirm sent to a deploy that does not exist: forbidden (it
    // names "first"), as for one that exists (below): the answer tells
    // nothing about which ids exist.
    let request = Request::post("/v1/deploys/other/confirm")
        .body(Body::from(confirm.sign(&[&host.ops]).to_json()))
        .expect("request");
    let (status, body, _) = send(&host, request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{body}"
    );
    // A valid confirm of a deploy that does not exist: not found.
    let (status, body, _) = send(&host, confirm_request("ghost", &host.ops)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{body}"
    );
    // ... and to another deploy that exists: forbidden (it names "first").
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !host
        .daemon
        .deploy("first")
        .is_some_and(|deploy| deploy.record.state.is_final())
    {
        assert!(std::time::Instant::now() < deadline, "first never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The same system failed as "first": only a retry is taken (quarantine).
    let mut other = signed_deploy("other");
    if let Signed::Deploy(deploy) = &mut other.request {
        deploy.retry_failed = true;
    }
    let other = other.sign(&[&host.ops]).to_json();
    let (status, body, _) = send(&host, post(other)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request = Request::post("/v1/deploys/other/confirm")
        .body(Body::from(confirm.sign(&[&host.ops]).to_json()))
        .expect("request");
    let (status, body, _) = send(&host, request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{body}"
    );

    // A read-only key may not deploy; a GET on the deploy endpoint is no route.
    let forbidden = signed_deploy("reader").sign(&[&host.reader]).to_json();
    let (status, body, _) = send(&host, post(forbidden)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body, _) = send(&host, get("/v1/deploy")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

/// A signed confirm of deploy `id`, as a request to its endpoint.
fn confirm_request(id: &str, key: &SecretKey) -> Request<Body> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let confirm = Message::new(
        "sambirano".parse().expect("host"),
        Signed::Confirm(deployd_protocol::DeployRef::new(id.parse().expect("id")).expect("nonce")),
        now,
        60,
    );
    Request::post(format!("/v1/deploys/{id}/confirm"))
        .body(Body::from(confirm.sign(&[key]).to_json()))
        .expect("request")
}

#[tokio::test]
async fn a_bad_signature_tells_nothing_about_the_deploy_id() {
    let host = host(false);
    let bytes = signed_deploy("known").sign(&[&host.ops]).to_json();
    let (status, body, _) = send(&host, post(bytes)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Named as the trusted key, signed by another: the signature does not verify.
    let forger = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let known = send(&host, confirm_request("known", &forger)).await;
    let unknown = send(&host, confirm_request("unknown", &forger)).await;
    assert_eq!(
        (known.0, known.1["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature")),
        "{}",
        known.2
    );
    assert_eq!(
        known, unknown,
        "a known and an unknown id answered differently"
    );
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_without_reading_it() {
    let host = host(false);
    // 300 000 bytes announced, and a body that never sends any.
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let request = Request::post("/v1/deploy")
        .header("content-length", "300000")
        .body(Body::from_stream(never))
        .expect("request");
    let answered = tokio::time::timeout(std::time::Duration::from_secs(1), send(&host, request));
    let (status, body, _) = answered.await.expect("an answer without the body");
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_a_slot_no_longer_than_the_request_timeout() {
    let host = host(false);
    let router = api::router(host.daemon.clone());
    // A body announced (within the limit) and never sent holds its slot.
    let stalled = || {
        let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        Request::post("/v1/deploy")
            .header("content-length", "1000")
            .body(Body::from_stream(never))
            .expect("request")
    };
    // Every slot taken at 0 s (they end at 30 s, with the timeout) ...
    let holding: Vec<_> = (0..api::MAX_CONCURRENT_REQUESTS)
        .map(|_| tokio::spawn(router.clone().oneshot(stalled())))
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    // ... one more at 20 s is answered by 50 s, its wait for a slot included.
    let waited = tokio::time::timeout(
        api::REQUEST_TIMEOUT + std::time::Duration::from_secs(1),
        router.clone().oneshot(stalled()),
    )
    .await
    .expect("an answer within the request timeout, the wait for a slot included")
    .expect("infallible");
    assert_eq!(waited.status(), StatusCode::BAD_REQUEST);
    for request in holding {
        let response = request.await.expect("task").expect("infallible");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn a_deploy_accepted_for_a_request_dropped_mid_accept_still_starts() {
    let host = host(false);
    let bytes = signed_deploy("dropped").sign(&[&host.ops]).to_json();
    // The client goes away while the blocking accept runs: the request's
    // future is polled once, then dropped.
    let request = api::router(host.daemon.clone()).oneshot(post(bytes));
    let dropped = tokio::time::timeout(std::time::Duration::ZERO, request).await;
    assert!(
        dropped.is_err(),
        "the accept finished within its first poll"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state = host
            .daemon
            .deploy("dropped")
            .map(|deploy| deploy.record.state);
        if state.is_some_and(|state| state != deployd_protocol::api::DeployState::Received) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy was accepted ({state:?}) but never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn events_carry_cursors_and_a_reconnection_gets_only_the_unseen() {
    let host = host(false);
    let bytes = signed_deploy("cursors").sign(&[&host.ops]).to_json();
    let (status, _, _) = send(&host, post(bytes)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !host
        .daemon
        .deploy("cursors")
        .is_some_and(|deploy| deploy.record.state.is_final())
    {
        assert!(std::time::Instant::now() < deadline, "never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, _, all) = send(&host, get("/v1/deploys/cursors/events")).await;
    let ids: Vec<&str> = all.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let events = all.lines().filter(|l| l.starts_with("event: ")).count();
    assert_eq!(ids.len(), events, "an event without an id: {all}");
    assert!(ids.contains(&"1.0"), "{all}");

    // Having seen the first phase and no line: everything else, once.
    let request = Request::get("/v1/deploys/cursors/events")
        .header("last-event-id", "1.0")
        .body(Body::empty())
        .expect("request");
    let (_, _, rest) = send(&host, request).await;
    let rest_ids: Vec<&str> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(rest_ids.len(), ids.len() - 1, "{rest}");
    assert!(!rest_ids.contains(&"1.0"), "{rest}");
    assert!(rest.contains("event: done"), "{rest}");
}
