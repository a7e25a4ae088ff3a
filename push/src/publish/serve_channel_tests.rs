//! push publish against push serve's channel API, through a stand-in of
//! that API that follows its contract (docs/src/design/channels.md, "push
//! serve's channel API"; the real server is push serve's channel). The
//! stand-in keeps one state per host and answers `GET` and `PUT
//! /v1/channel/hosts/{host}.json` with the contract's statuses. It does not
//! verify signatures, check that the host is in push.toml, hold long polls,
//! take reports, or send the `Deployd-Channel` header: push publish's
//! client relies on none of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deployd_protocol::{
    DesiredArrival, FixedClock, HostName, MemoryNonceStore, SecretKey, TrustedKey, TrustedKeys,
    Verifier,
};

use super::*;
use crate::test_git::git;

/// The stand-in's state.
#[derive(Default)]
struct StandIn {
    /// Per host: the sequence and the bytes held.
    held: BTreeMap<String, (u64, Vec<u8>)>,
    /// Before each of the next PUTs, another publisher's state with this
    /// sequence arrives first (the PUT then is `409 replayed`).
    others_publish: Vec<u64>,
}

type Shared = Arc<Mutex<StandIn>>;

fn sequence_of(bytes: &[u8]) -> Option<u64> {
    Held::parse(bytes.to_vec().into())
        .ok()
        .map(|held| held.sequence)
}

async fn get_state(State(shared): State<Shared>, Path(file): Path<String>) -> Response {
    let host = file.trim_end_matches(".json");
    match shared.lock().expect("lock").held.get(host) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => (
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","message":"no state"}"#,
        )
            .into_response(),
    }
}

async fn put_state(
    State(shared): State<Shared>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let host = file.trim_end_matches(".json").to_owned();
    let mut stand_in = shared.lock().expect("lock");
    if !stand_in.others_publish.is_empty() {
        let theirs = stand_in.others_publish.remove(0);
        let bytes = format!("someone else's state {theirs}").into_bytes();
        stand_in
            .held
            .insert(host.clone(), (theirs, state_like(theirs, &bytes)));
    }
    let Some(sequence) = sequence_of(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad_request","message":"not a desired state"}"#,
        )
            .into_response();
    };
    let held = stand_in.held.get(&host).map_or(0, |(held, _)| *held);
    if sequence <= held {
        let message = format!(
            r#"{{"error":"replayed","message":"sequence {sequence} is not above {held}"}}"#
        );
        return (StatusCode::CONFLICT, message).into_response();
    }
    stand_in.held.insert(host, (sequence, body.to_vec()));
    axum::Json(serde_json::json!({ "sequence": sequence })).into_response()
}

/// Another publisher's state with `sequence` (signed by a key of its own).
fn state_like(sequence: u64, _note: &[u8]) -> Vec<u8> {
    let key = SecretKey::generate("other-1".parse().expect("name")).expect("key");
    let payload = serde_json::json!({ "sequence": sequence }).to_string();
    deployd_protocol::Envelope::sign(DESIRED_PAYLOAD_TYPE, payload.into_bytes(), &[&key]).to_json()
}

async fn start(shared: Shared) -> String {
    let router = axum::Router::new()
        .route(
            "/v1/channel/hosts/{file}",
            axum::routing::get(get_state).put(put_state),
        )
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/v1/channel")
}

fn publisher(url: &str, repository_dir: &std::path::Path, key: &Arc<SecretKey>) -> Publisher {
    let repository = FlakeRepository::open(repository_dir).expect("repository");
    let rev = repository.resolve("HEAD").expect("HEAD");
    Publisher {
        channel: Channel::open(url, &crate::tls::Trust::default()).expect("channel"),
        channel_url: url.to_owned(),
        flake: repository.flake_reference(&rev),
        repository,
        rev,
        key: DeployKey::File(key.clone()),
        options: PublishOptions {
            channel: None,
            selection: Selection::default(),
            action: Action::Switch,
            flake: ".".parse().expect("flake"),
            build_host: None,
            key: None,
            allow_downgrade: false,
            retry_failed: false,
            lifetime: 3600,
            json: false,
            rev: "HEAD".into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_published_meanwhile_is_read_again_and_the_next_sequence_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
    let shared = Shared::default();
    let url = start(shared.clone()).await;
    let key = Arc::new(SecretKey::generate("ops-1".parse().expect("name")).expect("key"));
    let publisher = publisher(&url, dir.path(), &key);
    let host: HostName = "pi".parse().expect("host");
    let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
        .parse()
        .expect("path");

    assert_eq!(
        read_held(&publisher.channel, &host).await.expect("read"),
        None
    );
    let first = publish_host(&publisher, &host, &system, None).await;
    assert_eq!(first.ok().map(|p| p.sequence), Some(1));

    // Someone publishes 5 just before this PUT of 2: read again, write 6.
    shared.lock().expect("lock").others_publish = vec![5];
    let held = read_held(&publisher.channel, &host).await.expect("read");
    assert_eq!(held.as_ref().map(|held| held.sequence), Some(1));
    let second = publish_host(&publisher, &host, &system, held).await;
    assert_eq!(second.ok().map(|p| p.sequence), Some(6));

    let bytes = shared.lock().expect("lock").held["pi"].1.clone();
    let trusted = TrustedKeys::new([TrustedKey {
        key: key.public_key(),
        may: deployd_protocol::Permissions::ALL,
    }])
    .expect("keys");
    let clock = FixedClock::new(crate::sign::now());
    let verifier = Verifier::new(trusted, host.clone(), Box::new(clock));
    let arrival = DesiredArrival {
        last_sequence: Some(5),
        active_issued_at: None,
        max_age_s: 3600,
    };
    let verified = verifier
        .verify_desired(&bytes, &arrival, &mut MemoryNonceStore::default())
        .expect("the held state verifies");
    assert_eq!(verified.sequence, 6);

    // Others keep publishing: after one retry, the host fails.
    shared.lock().expect("lock").others_publish = vec![10, 20];
    let held = read_held(&publisher.channel, &host).await.expect("read");
    match publish_host(&publisher, &host, &system, held).await {
        Err(HostFailure::Failed(error)) => {
            assert!(error.to_string().contains("changed twice"), "{error}")
        }
        _ => panic!("refused twice: a failure"),
    }
}
