//! Router tests of the hooks' cheap checks (`tower::ServiceExt::oneshot`
//! on the service's own router): each refusal comes before a byte of the
//! body is read, which a body that records being polled shows; a hook
//! that passes them is read and taken.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use deployd_protocol::SecretKey;

use super::channel::Channel;
use super::config::{ForgeKind, ServeConfig};
use super::hook_body::{BodyLimits, BodyReader, MAX_HOOK_BYTES};
use super::queue::Queue;
use super::statuses::StatusPoster;
use super::{api, Service};

const SECRET: &[u8] = b"the webhook secret";

/// The service for `kind` hooks, its state in `dir`, reading bodies within
/// `limits`.
fn service(kind: ForgeKind, dir: &Path, limits: BodyLimits) -> Arc<Service> {
    let key = SecretKey::generate("ci-1".parse().expect("name")).expect("key");
    service_with(kind, dir, limits, &key, "")
}

/// The service for `kind` hooks, its state in `dir`, reading bodies within
/// `limits`, its deploy key `key`, with `extra` TOML at the end of its
/// config (`[channel]`).
pub(super) fn service_with(
    kind: ForgeKind,
    dir: &Path,
    limits: BodyLimits,
    key: &SecretKey,
    extra: &str,
) -> Arc<Service> {
    let config: ServeConfig = toml::from_str(&format!(
        "repository = \"file:///srv/fleet.git\"\nkey_file = \"/k\"\nstate_dir = \"{}\"\n\
         [forge]\nkind = \"{}\"\napi_url = \"https://forge.example.org\"\nrepository = \"ops/fleet\"\n\
         secret_file = \"/s\"\n[[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n{extra}",
        dir.display(),
        kind.as_str()
    ))
    .expect("config");
    let channel =
        Channel::open(dir, key.public_key(), &config.channel.publishers).expect("channel");
    Arc::new(Service {
        statuses: StatusPoster::start(&config.forge, None, None).expect("no statuses"),
        webhook_secret: SECRET.to_vec(),
        bodies: BodyReader::new(limits),
        ca_file: None,
        queue: Mutex::new(Queue::open(dir).expect("queue")),
        wake: Notify::new(),
        running: Mutex::new(None),
        counters: Mutex::default(),
        refusal_log: deployd_service::throttle::ThrottledLog::new(
            "refused hooks",
            deployd_service::throttle::REFUSAL_LOG_INTERVAL,
        ),
        channel,
        pages: super::pages::Pages::new(
            dir,
            Arc::new(SecretKey::generate("ci-1".parse().expect("name")).expect("key")),
        ),
        shutdown: CancellationToken::new(),
        config,
    })
}

/// A body holding `bytes` that records whether it was ever polled.
fn watched(bytes: Vec<u8>) -> (Body, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let stream = futures_util::stream::once(async move {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(bytes))
    });
    (Body::from_stream(stream), polled)
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn push_body() -> Vec<u8> {
    format!(
        "{{\"ref\":\"refs/heads/main\",\"before\":\"{}\",\"after\":\"{}\"}}",
        "a".repeat(40),
        "b".repeat(40)
    )
    .into_bytes()
}

/// Sends a hook to `path` with `headers` and a watched `body` (whose
/// length is announced unless `headers` names one); its status, its
/// `Retry-After`, and whether the body was read.
async fn send(
    service: &Arc<Service>,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, Option<String>, bool) {
    let mut request = Request::post(path);
    if !headers.iter().any(|(name, _)| *name == "content-length") {
        request = request.header("content-length", body.len());
    }
    for (name, value) in headers {
        if !value.is_empty() {
            request = request.header(*name, value);
        }
    }
    let (body, polled) = watched(body);
    let answer = api::router(service.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("an answer");
    let retry_after = answer
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("text").to_owned());
    (answer.status(), retry_after, polled.load(Ordering::SeqCst))
}

#[tokio::test]
async fn refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let github = service(ForgeKind::Github, dir.path(), BodyLimits::default());
    let event = ("x-github-event", "push".to_owned());
    let well_formed = ("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)));
    let body = push_body();

    // No signature, or one that is no HMAC-SHA256: 401.
    for signature in [
        "",
        "ab",
        "sha256=abc",
        "sha1=0123",
        &format!("sha256={}", "zz".repeat(32)),
    ] {
        let headers = [event.clone(), ("x-hub-signature-256", signature.to_owned())];
        let (status, _, read) = send(&github, "/v1/hooks/github", &headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature:?}");
        assert!(!read, "{signature:?}: the body was read");
    }
    // Over 5 MiB announced: 413 (nothing of it sent but its header).
    let too_long = ("content-length", (MAX_HOOK_BYTES + 1).to_string());
    let headers = [event.clone(), well_formed.clone(), too_long];
    let (status, _, read) = send(&github, "/v1/hooks/github", &headers, Vec::new()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!read);
    // No length announced (a chunked body): 411.
    let mut request = Request::post("/v1/hooks/github")
        .header(event.0, &event.1)
        .header(well_formed.0, &well_formed.1);
    request = request.header("transfer-encoding", "chunked");
    let (unannounced, polled) = watched(body.clone());
    let answer = api::router(github.clone())
        .oneshot(request.body(unannounced).expect("request"))
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::LENGTH_REQUIRED);
    assert!(!polled.load(Ordering::SeqCst));
    // Another forge's route, and no route at all: 404.
    for path in ["/v1/hooks/gitlab", "/v1/hooks"] {
        let headers = [event.clone(), well_formed.clone()];
        let (status, _, read) = send(&github, path, &headers, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!read, "{path}");
    }
    // A well-formed but wrong signature is known only from the body: read, then 401.
    let headers = [event.clone(), well_formed.clone()];
    let (status, _, read) = send(&github, "/v1/hooks/github", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(read);
    // The forge's own hook: read and queued.
    let signed = ("x-hub-signature-256", format!("sha256={}", hmac_hex(&body)));
    let (status, _, read) = send(&github, "/v1/hooks/github", &[event, signed], body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(read);
}

#[tokio::test]
async fn gitea_forgejo_and_gitlab_checked_before_the_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = push_body();
    for kind in [ForgeKind::Gitea, ForgeKind::Forgejo] {
        let service = service(kind, dir.path(), BodyLimits::default());
        let path = format!("/v1/hooks/{}", kind.as_str());
        let event = ("x-gitea-event", "push".to_owned());
        for signature in ["", "sha256=00", &"g".repeat(64)] {
            let headers = [event.clone(), ("x-gitea-signature", signature.to_owned())];
            let (status, _, read) = send(&service, &path, &headers, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind:?} {signature:?}");
            assert!(!read, "{kind:?} {signature:?}");
        }
        let headers = [event, ("x-gitea-signature", hmac_hex(&body))];
        let (status, _, read) = send(&service, &path, &headers, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{kind:?}");
        assert!(read);
    }
    // GitLab's token is checked whole before the body.
    let dir = tempfile::tempdir().expect("temp dir");
    let gitlab = service(ForgeKind::Gitlab, dir.path(), BodyLimits::default());
    let event = ("x-gitlab-event", "Push Hook".to_owned());
    for token in ["", "the webhook secreT", "the webhook secret "] {
        let headers = [event.clone(), ("x-gitlab-token", token.to_owned())];
        let (status, _, read) = send(&gitlab, "/v1/hooks/gitlab", &headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(!read, "{token:?}");
    }
    let token = ("x-gitlab-token", "the webhook secret".to_owned());
    let (status, _, read) = send(&gitlab, "/v1/hooks/gitlab", &[event, token], body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(read);
}

#[tokio::test]
async fn a_large_body_without_a_slot_is_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = BodyLimits {
        large_slots: 0,
        slot_wait: Duration::from_millis(50),
        ..BodyLimits::default()
    };
    let github = service(ForgeKind::Github, dir.path(), limits);
    let event = ("x-github-event", "push".to_owned());
    let mut large = push_body();
    large.resize(limits.small_bytes + 1, b' ');
    let signed = (
        "x-hub-signature-256",
        format!("sha256={}", hmac_hex(&large)),
    );
    let headers = [event.clone(), signed];
    let (status, retry_after, read) = send(&github, "/v1/hooks/github", &headers, large).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        retry_after.as_deref(),
        Some(limits.read_timeout.as_secs().to_string().as_str())
    );
    assert!(!read);
    // A small one is read all the same.
    let body = push_body();
    let signed = ("x-hub-signature-256", format!("sha256={}", hmac_hex(&body)));
    let (status, _, read) = send(&github, "/v1/hooks/github", &[event, signed], body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(read);
}
