//! Router tests of the channel (`tower::ServiceExt::oneshot` on the
//! service's own router): what it holds and answers, every refusal of a
//! publish and of a report, the long poll's `304` and its wake-up, the
//! bound on long polls, and what survives a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::{
    Action, DeployRequest, DesiredState, HostName, HostReport, Message, Request as Signed,
    SecretKey, MAX_ENVELOPE_BYTES,
};
use tower::ServiceExt;

use super::super::config::ForgeKind;
use super::super::hook_body::BodyLimits;
use super::super::router_tests::service_with;
use super::super::{api, Service};
use super::polls::{PER_CLIENT, TOTAL};
use super::Channel;

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-pi";

struct Fixture {
    service: Arc<Service>,
    /// push serve's deploy key.
    own: SecretKey,
    /// A `[channel] publishers` key.
    publisher: SecretKey,
    /// pi's host key (pinned in push.toml).
    pi_key: SecretKey,
    dir: tempfile::TempDir,
}

fn key(name: &str) -> SecretKey {
    SecretKey::generate(name.parse().expect("name")).expect("key")
}

fn host(name: &str) -> HostName {
    name.parse().expect("host")
}

/// push serve with a channel whose push.toml has `pi` (pulls, host key
/// pinned), `laptop` (pulls, no key pinned) and `web` (called).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (own, publisher, pi_key) = (key("ci-1"), key("ops-1"), key("pi-host-1"));
    let extra = format!("[channel]\npublishers = [\"{}\"]\n", publisher.public_key());
    let service = service_with(
        ForgeKind::Forgejo,
        dir.path(),
        BodyLimits::default(),
        &own,
        &extra,
    );
    let inventory = toml::from_str(&format!(
        "[hosts.pi]\npull = true\nhost_key = \"{}\"\n[hosts.laptop]\npull = true\n[hosts.web]\n",
        pi_key.public_key()
    ))
    .expect("push.toml");
    service.channel.set_fleet(&inventory);
    Fixture {
        service,
        own,
        publisher,
        pi_key,
        dir,
    }
}

fn now() -> u64 {
    crate::sign::now()
}

/// A desired state for `host`, `sequence`, issued `now`, valid `lifetime_s`.
fn state(host_name: &str, sequence: u64, now: u64, lifetime_s: u64) -> DesiredState {
    let deploy = DeployRequest::new(
        format!("{host_name}-{sequence}").parse().expect("id"),
        SYSTEM.parse().expect("path"),
        Action::Switch,
    )
    .expect("deploy");
    DesiredState::new(host(host_name), deploy, sequence, now, lifetime_s)
}

fn signed(state: &DesiredState, key: &SecretKey) -> Vec<u8> {
    state.sign(&[key]).to_json()
}

struct Answer {
    status: StatusCode,
    channel_header: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON")
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

async fn ask(service: &Arc<Service>, request: Request<Body>) -> Answer {
    let answer = api::router(service.clone())
        .oneshot(request)
        .await
        .expect("an answer");
    let status = answer.status();
    let channel_header = answer
        .headers()
        .get("deployd-channel")
        .map(|value| value.to_str().expect("text").to_owned());
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        channel_header,
        body,
    }
}

async fn get(service: &Arc<Service>, path: &str) -> Answer {
    ask(
        service,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

async fn send(service: &Arc<Service>, method: &str, path: &str, body: Vec<u8>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    ask(service, request).await
}

async fn publish(service: &Arc<Service>, host_name: &str, bytes: Vec<u8>) -> Answer {
    let path = format!("/v1/channel/hosts/{host_name}.json");
    send(service, "PUT", &path, bytes).await
}

#[tokio::test]
async fn a_state_is_held_byte_for_byte_and_every_answer_says_push_serve() {
    let fixture = fixture();
    let service = &fixture.service;
    let none = get(service, "/v1/channel/hosts/pi.json").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.error(), "not_found");
    let bytes = signed(&state("pi", 1, now(), 3600), &fixture.own);
    let published = publish(service, "pi", bytes.clone()).await;
    assert_eq!(published.status, StatusCode::OK, "{:?}", published.json());
    assert_eq!(published.json(), serde_json::json!({"sequence": 1}));
    let held = get(service, "/v1/channel/hosts/pi.json").await;
    assert_eq!(held.status, StatusCode::OK);
    assert_eq!(held.body, bytes);
    // Hosts that are not in push.toml, and paths that are not the API's.
    for path in [
        "/v1/channel/hosts/nas.json",
        "/v1/channel/hosts/pi",
        "/v1/channel/hosts/..%2Fpi.json",
        "/v1/channel/reports/nas",
        "/v1/channel/elsewhere",
    ] {
        let answer = get(service, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error(), "not_found", "{path}");
    }
    for answer in [none, published, held] {
        assert_eq!(answer.channel_header.as_deref(), Some("push-serve"));
    }
    // The other routes do not say it.
    let status = get(service, "/v1/status").await;
    assert_eq!(status.channel_header, None);
    // A publisher's key may publish too.
    let next = signed(&state("pi", 2, now(), 3600), &fixture.publisher);
    assert_eq!(publish(service, "pi", next).await.status, StatusCode::OK);
}

#[tokio::test]
async fn before_push_toml_is_read_no_host_is_known() {
    let dir = tempfile::tempdir().expect("temp dir");
    let own = key("ci-1");
    let service = service_with(
        ForgeKind::Github,
        dir.path(),
        BodyLimits::default(),
        &own,
        "",
    );
    let answer = publish(&service, "pi", signed(&state("pi", 1, now(), 60), &own)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("has not read push.toml yet"),
        "{:?}",
        answer.json()
    );
}

#[tokio::test]
async fn publishes_that_are_refused_change_nothing() {
    let fixture = fixture();
    let service = &fixture.service;
    let first = signed(&state("pi", 3, now(), 3600), &fixture.own);
    assert_eq!(
        publish(service, "pi", first.clone()).await.status,
        StatusCode::OK
    );
    let stranger = key("mallory-1");
    let unsigned = deployd_protocol::Envelope::sign(
        deployd_protocol::DESIRED_PAYLOAD_TYPE,
        state("pi", 4, now(), 3600).to_payload_bytes(),
        &[],
    )
    .to_json();
    let mut tampered = signed(&state("pi", 4, now(), 3600), &fixture.own);
    let text = String::from_utf8(tampered.clone()).expect("text");
    // The payload is base64: change one of its characters.
    let at = text.find("\"payload\":\"").expect("payload") + 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    // A deploy message, not a desired state.
    let deploy = Message::new(
        host("pi"),
        Signed::Deploy(
            DeployRequest::new(
                "pi-9".parse().expect("id"),
                SYSTEM.parse().expect("path"),
                Action::Switch,
            )
            .expect("deploy"),
        ),
        now(),
        300,
    );
    let plain_deploy = deployd_protocol::Envelope::sign(
        deployd_protocol::PAYLOAD_TYPE,
        deploy.to_payload_bytes(),
        &[&fixture.own],
    )
    .to_json();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("unsigned", unsigned, StatusCode::BAD_REQUEST, "bad_request"),
        (
            "a foreign key",
            signed(&state("pi", 4, now(), 3600), &stranger),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "tampered",
            tampered,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "another host's state",
            signed(&state("web", 4, now(), 3600), &fixture.own),
            StatusCode::FORBIDDEN,
            "wrong_host",
        ),
        ("the same again", first, StatusCode::CONFLICT, "replayed"),
        (
            "an older sequence",
            signed(&state("pi", 2, now(), 3600), &fixture.own),
            StatusCode::CONFLICT,
            "replayed",
        ),
        (
            "expired",
            signed(&state("pi", 4, now() - 7200, 3600), &fixture.own),
            StatusCode::FORBIDDEN,
            "expired",
        ),
        (
            "issued in the future",
            signed(&state("pi", 4, now() + 3600, 3600), &fixture.own),
            StatusCode::FORBIDDEN,
            "not_yet_valid",
        ),
        (
            "a deploy, not a desired state",
            plain_deploy,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "not JSON",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (what, bytes, status, code) in cases {
        let answer = publish(service, "pi", bytes).await;
        assert_eq!(answer.status, status, "{what}: {:?}", answer.json());
        assert_eq!(answer.error(), code, "{what}");
        assert_eq!(
            answer.channel_header.as_deref(),
            Some("push-serve"),
            "{what}"
        );
    }
    // Over an envelope's size, announced: refused before it is read.
    let request = Request::put("/v1/channel/hosts/pi.json")
        .header("content-length", MAX_ENVELOPE_BYTES + 1)
        .body(Body::empty())
        .expect("request");
    let too_large = ask(service, request).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error(), "payload_too_large");
    // No length announced.
    let request = Request::put("/v1/channel/hosts/pi.json")
        .header("transfer-encoding", "chunked")
        .body(Body::from("{}"))
        .expect("request");
    assert_eq!(
        ask(service, request).await.status,
        StatusCode::LENGTH_REQUIRED
    );
    // Still the first state.
    let held = service.channel.held(&host("pi")).expect("held");
    assert_eq!(held.summary.sequence, 3);
}

#[tokio::test]
async fn a_long_poll_ends_in_304_or_at_once_when_a_newer_state_is_held() {
    let fixture = fixture();
    let service = &fixture.service;
    for query in [
        "after=1&wait=61",
        "after=1&wait=x",
        "after=-1",
        "wait=5",
        "after=1&wait=1.5",
    ] {
        let answer = get(service, &format!("/v1/channel/hosts/pi.json?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.error(), "bad_request", "{query}");
    }
    // Nothing held: waited for, then 304.
    let started = Instant::now();
    let answer = get(service, "/v1/channel/hosts/pi.json?after=0&wait=1").await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert_eq!(answer.channel_header.as_deref(), Some("push-serve"));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let first = signed(&state("pi", 1, now(), 3600), &fixture.own);
    assert_eq!(
        publish(service, "pi", first.clone()).await.status,
        StatusCode::OK
    );
    // Newer than asked: at once.
    let answer = get(service, "/v1/channel/hosts/pi.json?after=0&wait=60").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, first);
    // Not newer, no wait: 304 at once.
    let answer = get(service, "/v1/channel/hosts/pi.json?after=1").await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    // Waiting, then woken by a publish.
    let waiting = {
        let service = service.clone();
        tokio::spawn(async move {
            let answer = get(&service, "/v1/channel/hosts/pi.json?after=1&wait=30").await;
            (answer, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = signed(&state("pi", 2, now(), 3600), &fixture.own);
    let published_at = Instant::now();
    assert_eq!(
        publish(service, "pi", second.clone()).await.status,
        StatusCode::OK
    );
    let (answer, answered_at) = waiting.await.expect("the long poll");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, second);
    let woken_after = answered_at.duration_since(published_at);
    eprintln!("a long poll was answered {woken_after:?} after the publish");
    assert!(woken_after < Duration::from_secs(2), "{woken_after:?}");
}

#[tokio::test]
async fn long_polls_are_bounded_per_client_and_in_all() {
    let fixture = fixture();
    let service = &fixture.service;
    let path = "/v1/channel/hosts/pi.json?after=0&wait=30";
    let mut held: Vec<_> = (0..PER_CLIENT)
        .map(|_| service.channel.polls.take(None).expect("a permit"))
        .collect();
    let request = Request::get(path).body(Body::empty()).expect("request");
    let answer = ask(service, request).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error(), "busy");
    // Asking without wait is still answered.
    let answer = get(service, "/v1/channel/hosts/pi.json?after=0").await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    for n in 0..(TOTAL - PER_CLIENT) {
        let other = std::net::IpAddr::from([10, 1, (n / 250) as u8, (n % 250) as u8]);
        held.push(service.channel.polls.take(Some(other)).expect("a permit"));
    }
    let stranger: std::net::SocketAddr = "192.0.2.7:4000".parse().expect("address");
    let request = Request::get(path)
        .extension(axum::extract::ConnectInfo(stranger))
        .body(Body::empty())
        .expect("request");
    let answer = ask(service, request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error(), "busy");
}

fn record(host_name: &str, deploy_id: &str, state: DeployState) -> DeployRecord {
    DeployRecord {
        deploy_id: deploy_id.parse().expect("id"),
        host: host(host_name),
        store_path: SYSTEM.parse().expect("path"),
        action: Action::Switch,
        flake: None,
        rev: None,
        key: "ci-1".parse().expect("key name"),
        issued_at: now(),
        state,
        phases: Vec::new(),
        error: None,
        previous_system: None,
        reboot_required: false,
        log_tail: Vec::new(),
        created_at_ms: now() * 1000,
        finished_at_ms: None,
    }
}

fn report(host_name: &str, sent_at: u64, state: DeployState) -> HostReport {
    HostReport {
        host: host(host_name),
        sent_at,
        sequence: Some(1),
        record: record(host_name, "pi-1", state),
    }
}

async fn post_report(service: &Arc<Service>, host_name: &str, bytes: Vec<u8>) -> Answer {
    let path = format!("/v1/channel/reports/{host_name}");
    send(service, "POST", &path, bytes).await
}

#[tokio::test]
async fn reports_are_taken_from_the_pinned_host_key_alone_and_the_newest_kept() {
    let fixture = fixture();
    let service = &fixture.service;
    let none = get(service, "/v1/channel/reports/pi").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let fresh = report("pi", now(), DeployState::Succeeded);
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "signed by another key",
            "pi",
            fresh.sign(&key("pi-host-2")).to_json(),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "by a deploy key",
            "pi",
            fresh.sign(&fixture.own).to_json(),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "naming another host",
            "pi",
            report("web", now(), DeployState::Succeeded)
                .sign(&fixture.pi_key)
                .to_json(),
            StatusCode::FORBIDDEN,
            "wrong_host",
        ),
        (
            "stale",
            "pi",
            report("pi", now() - 20 * 60, DeployState::Succeeded)
                .sign(&fixture.pi_key)
                .to_json(),
            StatusCode::FORBIDDEN,
            "expired",
        ),
        (
            "from a host without a pinned key",
            "laptop",
            report("laptop", now(), DeployState::Succeeded)
                .sign(&fixture.pi_key)
                .to_json(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "for a host not in push.toml",
            "nas",
            report("nas", now(), DeployState::Succeeded)
                .sign(&fixture.pi_key)
                .to_json(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (what, to, bytes, status, code) in cases {
        let answer = post_report(service, to, bytes).await;
        assert_eq!(answer.status, status, "{what}: {:?}", answer.json());
        assert_eq!(answer.error(), code, "{what}");
        assert_eq!(answer.channel_header.as_deref(), Some("push-serve"));
        if to == "laptop" {
            let message = answer.json()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("pin"), "{message}");
        }
    }
    assert_eq!(
        get(service, "/v1/channel/reports/pi").await.status,
        StatusCode::NOT_FOUND
    );
    // The host's own: kept, and read back as JSON.
    let answer = post_report(service, "pi", fresh.sign(&fixture.pi_key).to_json()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let read = get(service, "/v1/channel/reports/pi").await;
    assert_eq!(read.status, StatusCode::OK);
    let read: HostReport = serde_json::from_slice(&read.body).expect("a report");
    assert_eq!(read, fresh);
    // An older one (within its window) is refused; the newest stays.
    let older = report("pi", now() - 60, DeployState::Activating);
    let answer = post_report(service, "pi", older.sign(&fixture.pi_key).to_json()).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.error(), "replayed");
    // The very same one again is taken (a host retrying), and changes nothing.
    let answer = post_report(service, "pi", fresh.sign(&fixture.pi_key).to_json()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        service.channel.report(&host("pi")).expect("kept").report,
        fresh
    );
}

#[tokio::test]
async fn what_the_channel_holds_survives_a_restart() {
    let fixture = fixture();
    let service = &fixture.service;
    let bytes = signed(&state("pi", 5, now(), 3600), &fixture.own);
    assert_eq!(
        publish(service, "pi", bytes.clone()).await.status,
        StatusCode::OK
    );
    let kept = report("pi", now(), DeployState::Succeeded);
    let answer = post_report(service, "pi", kept.sign(&fixture.pi_key).to_json()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let reopened =
        Channel::open(fixture.dir.path(), fixture.own.public_key(), &[]).expect("reopened");
    let held = reopened.held(&host("pi")).expect("held");
    assert_eq!(&*held.bytes, bytes.as_slice());
    assert_eq!(held.summary.sequence, 5);
    assert!(held.signed_by_service);
    assert_eq!(reopened.report(&host("pi")).expect("report").report, kept);
    let state_file = fixture.dir.path().join("channel/hosts/pi.json");
    assert_eq!(std::fs::read(state_file).expect("file"), bytes);
    // The status shows the pull hosts.
    let status = get(service, "/v1/status").await.json();
    let pulling = status["pulling"].as_array().expect("pulling");
    let pi = pulling
        .iter()
        .find(|entry| entry["host"] == "pi")
        .expect("pi");
    assert_eq!(pi["held"]["sequence"], 5, "{status}");
    assert_eq!(pi["held"]["store_path"], SYSTEM);
    assert_eq!(pi["report"]["state"], "succeeded");
    assert_eq!(pi["report"]["deploy_id"], "pi-1");
    assert!(pulling.iter().any(|entry| entry["host"] == "laptop"));
    assert!(!pulling.iter().any(|entry| entry["host"] == "web"));
}

#[tokio::test]
async fn a_key_id_alone_does_not_make_a_state_push_serves() {
    let fixture = fixture();
    let service = &fixture.service;
    // A publisher's state with an extra signature under push serve's key id,
    // made by another key of that name: it verifies by the publisher alone.
    let impostor = key("ci-1");
    let bytes = state("pi", 3, now(), 3600)
        .sign(&[&fixture.publisher, &impostor])
        .to_json();
    assert_eq!(publish(service, "pi", bytes).await.status, StatusCode::OK);
    let held = service.channel.held(&host("pi")).expect("held");
    assert!(!held.signed_by_service, "a key id is not a signer");
    // Nor after a restart, when it is read back from disk.
    let reopened =
        Channel::open(fixture.dir.path(), fixture.own.public_key(), &[]).expect("reopened");
    assert!(!reopened.held(&host("pi")).expect("held").signed_by_service);
    // push serve's own signature does make it push serve's, read back too.
    let own = signed(&state("pi", 4, now(), 3600), &fixture.own);
    assert_eq!(publish(service, "pi", own).await.status, StatusCode::OK);
    assert!(
        service
            .channel
            .held(&host("pi"))
            .expect("held")
            .signed_by_service
    );
    let reopened =
        Channel::open(fixture.dir.path(), fixture.own.public_key(), &[]).expect("reopened");
    assert!(reopened.held(&host("pi")).expect("held").signed_by_service);
}

fn deploy(id: &str) -> DeployRequest {
    DeployRequest::new(
        id.parse().expect("id"),
        SYSTEM.parse().expect("path"),
        Action::Switch,
    )
    .expect("deploy")
}

#[tokio::test]
async fn a_rollout_does_not_replace_a_state_published_after_its_check() {
    let fixture = fixture();
    let service = &fixture.service;
    let pi = host("pi");
    // The rollout checked an empty channel; `push publish` put 7 meanwhile.
    let meanwhile = signed(&state("pi", 7, now(), 3600), &fixture.publisher);
    assert_eq!(
        publish(service, "pi", meanwhile.clone()).await.status,
        StatusCode::OK
    );
    let refused = super::publish::publish(service, &fixture.own, &pi, deploy("r-1"), None)
        .await
        .expect_err("refused");
    assert_eq!(
        refused.to_string(),
        "the channel changed meanwhile: 7 held now"
    );
    assert_eq!(
        &*service.channel.held(&pi).expect("held").bytes,
        meanwhile.as_slice()
    );
    // A rollout that checked 7 publishes 8.
    let sequence = super::publish::publish(service, &fixture.own, &pi, deploy("r-2"), Some(7))
        .await
        .expect("published");
    assert_eq!(sequence, 8);
    let held = service.channel.held(&pi).expect("held");
    assert_eq!(held.summary.sequence, 8);
    assert!(held.signed_by_service);
}

#[tokio::test]
async fn no_state_follows_the_last_sequence() {
    let fixture = fixture();
    let service = &fixture.service;
    let pi = host("pi");
    let last = signed(&state("pi", u64::MAX, now(), 3600), &fixture.publisher);
    assert_eq!(
        publish(service, "pi", last.clone()).await.status,
        StatusCode::OK
    );
    let refused =
        super::publish::publish(service, &fixture.own, &pi, deploy("r-1"), Some(u64::MAX))
            .await
            .expect_err("refused");
    assert!(
        refused.to_string().contains("the last there is"),
        "{refused:#}"
    );
    assert_eq!(
        &*service.channel.held(&pi).expect("held").bytes,
        last.as_slice()
    );
}

#[tokio::test]
async fn a_reports_log_is_kept_but_never_answered() {
    let fixture = fixture();
    let service = &fixture.service;
    let mut failed = report("pi", now(), DeployState::Failed);
    failed.record.log_tail = vec!["activating: token=hunter2".into()];
    failed.record.error = Some(deployd_protocol::api::DeployFailure {
        code: "switch_failed".into(),
        message: "the switch failed".into(),
    });
    failed.record.finished_at_ms = Some(now() * 1000);
    let bytes = failed.sign(&fixture.pi_key).to_json();
    let answer = post_report(service, "pi", bytes.clone()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    // The public answer: the report as `push status` reads it, its log gone.
    let read = get(service, "/v1/channel/reports/pi").await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&read.body).contains("hunter2"));
    let read: HostReport = serde_json::from_slice(&read.body).expect("a report");
    let mut expected = failed.clone();
    expected.record.log_tail = Vec::new();
    assert_eq!(read, expected);
    let status = get(service, "/v1/status").await;
    assert!(!String::from_utf8_lossy(&status.body).contains("hunter2"));
    let status = status.json();
    let pi = status["pulling"]
        .as_array()
        .expect("pulling")
        .iter()
        .find(|entry| entry["host"] == "pi")
        .expect("pi");
    assert_eq!(pi["report"]["error"], "switch_failed: the switch failed");
    // The full report stays on disk.
    let kept = fixture.dir.path().join("channel/reports/pi.json");
    assert_eq!(std::fs::read(kept).expect("kept"), bytes);
}
