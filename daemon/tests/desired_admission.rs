//! A desired state is applied exactly once, also across a crash between
//! writing its deploy's record and committing the channel's sequence and
//! its nonce (docs/src/design/channels.md, "Applying it exactly once"):
//! the crash is made by putting back the sequence and nonce files as they
//! were before the state was accepted, then opening the daemon again over
//! the same state directory. The deploys meet a stand-in for `nix-store`
//! that refuses every fetch, so nothing outside the directory changes.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::daemon::{AdmissionError, Channel, DesiredAdmission};
use deployd::state::ChannelSequence;
use deployd::{Config, Daemon, Environment};
use deployd_protocol::{Action, DeployRequest, DesiredState, SecretKey};

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";
const CHANNEL: &str = "https://channel.example.org/fleet";

fn open(dir: &Path, ops: &SecretKey) -> Arc<Daemon> {
    let nix_store = support::stand_in_nix_store(
        dir,
        "#!/bin/sh\necho 'nix-store stand-in: the cache is down' >&2\nexit 1\n",
    );
    let text = support::config_text(dir, ops, "", Some(&nix_store));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    Daemon::open(config, Environment::default()).expect("daemon")
}

fn desired(ops: &SecretKey, sequence: u64) -> Vec<u8> {
    desired_issued(ops, sequence, support::now(), false)
}

fn desired_issued(
    ops: &SecretKey,
    sequence: u64,
    issued_at: u64,
    allow_downgrade: bool,
) -> Vec<u8> {
    let mut deploy = DeployRequest::new(
        format!("pulled-{sequence}").parse().expect("id"),
        SYSTEM.parse().expect("path"),
        Action::Switch,
    )
    .expect("random");
    deploy.allow_downgrade = allow_downgrade;
    let host = "sambirano".parse().expect("host");
    DesiredState::new(host, deploy, sequence, issued_at, 3600)
        .sign(&[ops])
        .to_json()
}

fn accept(daemon: &Daemon, state_dir: &Path, bytes: &[u8]) -> DesiredAdmission {
    let mut sequence = ChannelSequence::load(state_dir, CHANNEL).expect("sequence file");
    daemon
        .accept_desired(
            bytes,
            Channel {
                url: CHANNEL,
                sequence: &mut sequence,
            },
        )
        .expect("accepted")
}

async fn deploy_count(daemon: &Arc<Daemon>) -> usize {
    let request = Request::get("/v1/deploys?limit=50")
        .body(Body::empty())
        .expect("request");
    let (status, body, text) = support::answer(daemon.clone(), request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    body.as_array().expect("a list").len()
}

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push((path.clone(), std::fs::read(&path).expect("read")));
        }
    }
    found
}

#[tokio::test]
async fn a_state_recorded_before_a_crash_is_not_applied_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let state_dir = dir.path().join("state");
    let daemon = open(dir.path(), &ops);
    let bytes = desired(&ops, 1);

    // The sequence and nonce files as they were before the state came.
    let pull_dir = state_dir.join("pull");
    let nonces = state_dir.join("nonces.json");
    let nonces_before = std::fs::read(&nonces).ok();

    let DesiredAdmission::New(first) = accept(&daemon, &state_dir, &bytes) else {
        panic!("a new state must start a deploy");
    };
    assert_eq!(first.sequence, 1);
    assert_eq!(deploy_count(&daemon).await, 1);
    drop(daemon);

    // The crash: the record was written, the sequence and the nonce were not.
    let kept_records: Vec<_> = files(&state_dir)
        .into_iter()
        .filter(|(path, _)| !path.starts_with(&pull_dir) && path != &nonces)
        .collect();
    std::fs::remove_dir_all(&pull_dir).expect("forget the sequence");
    match &nonces_before {
        Some(bytes) => std::fs::write(&nonces, bytes).expect("old nonces"),
        None => std::fs::remove_file(&nonces).expect("no nonces yet"),
    }
    assert!(!kept_records.is_empty());

    let daemon = open(dir.path(), &ops);
    assert_eq!(
        accept(&daemon, &state_dir, &bytes),
        DesiredAdmission::AlreadyRecorded(first.clone()),
        "the recorded state is found and only its sequence committed"
    );
    assert_eq!(deploy_count(&daemon).await, 1, "no second deploy");
    assert_eq!(
        ChannelSequence::load(&state_dir, CHANNEL)
            .expect("sequence file")
            .last(),
        Some(1)
    );

    // Served once more, it is refused and records nothing.
    let mut sequence = ChannelSequence::load(&state_dir, CHANNEL).expect("sequence file");
    let refused = daemon.accept_desired(
        &bytes,
        Channel {
            url: CHANNEL,
            sequence: &mut sequence,
        },
    );
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(deploy_count(&daemon).await, 1);
}

#[tokio::test]
async fn a_state_superseded_on_one_channel_is_refused_from_another() {
    const OTHER: &str = "https://mirror.example.org/fleet";
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let state_dir = dir.path().join("state");
    let daemon = open(dir.path(), &ops);
    let now = support::now();

    let newer = desired_issued(&ops, 5, now, false);
    assert!(matches!(
        accept(&daemon, &state_dir, &newer),
        DesiredAdmission::New(_)
    ));

    // An older state, allowed to downgrade, never fetched from the first
    // channel, served by another one with a low sequence of its own.
    let older = desired_issued(&ops, 1, now - 100, true);
    let mut other = ChannelSequence::load(&state_dir, OTHER).expect("sequence file");
    let refused = daemon.accept_desired(
        &older,
        Channel {
            url: OTHER,
            sequence: &mut other,
        },
    );
    assert!(
        matches!(refused, Err(AdmissionError::IssuedBeforeLastApplied)),
        "{refused:?}"
    );
    assert_eq!(deploy_count(&daemon).await, 1, "nothing recorded");
    assert_eq!(
        ChannelSequence::load(&state_dir, OTHER)
            .expect("sequence file")
            .last(),
        None,
        "no sequence committed for the other channel"
    );
    let applied: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state_dir.join("pull").join("applied.json")).expect("applied.json"),
    )
    .expect("json");
    assert_eq!(applied["issued_at"], now);
}

#[tokio::test]
async fn other_bytes_with_the_applied_sequence_are_told_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = support::key("ops-1");
    let state_dir = dir.path().join("state");
    let daemon = open(dir.path(), &ops);
    let applied = desired(&ops, 3);
    assert!(matches!(
        accept(&daemon, &state_dir, &applied),
        DesiredAdmission::New(_)
    ));
    // A second publisher wrote another state with the same sequence.
    let raced = desired(&ops, 3);
    let mut sequence = ChannelSequence::load(&state_dir, CHANNEL).expect("sequence file");
    let refused = daemon.accept_desired(
        &raced,
        Channel {
            url: CHANNEL,
            sequence: &mut sequence,
        },
    );
    assert!(
        matches!(
            refused,
            Err(AdmissionError::Rejected(
                deployd_protocol::RejectError::OldSequence {
                    sequence: 3,
                    last: 3
                }
            ))
        ),
        "{refused:?}"
    );
    assert!(daemon.has_recorded_envelope(&applied));
    assert!(
        !daemon.has_recorded_envelope(&raced),
        "the poller warns about these bytes"
    );
}
