//! Threats to a desired state read from a channel (a place the operator
//! does not fully control: a bucket, a CDN, push serve): each is refused
//! with its code and leaves the nonce store untouched (the fixture checks).
//! An older sequence, the same state again, another host's state, an
//! expired one, one signed by a key that may only read, one whose window is
//! longer than the host allows, and one replayed after a restart (a new
//! verifier over the same nonce store and the last sequence kept on disk).

use deployd_protocol::{
    Action, DeployId, DeployRequest, DesiredArrival, DesiredState, Envelope, HostName,
    MemoryNonceStore, RejectError, SecretKey, Verified, VerifiedDesired, DEFAULT_MAX_DESIRED_AGE_S,
    DESIRED_PAYLOAD_TYPE,
};
use serde_json::json;

use crate::fixture::{assert_code, host, Fixture, NOW, SYSTEM};

const DAY: u64 = 24 * 60 * 60;

fn state(for_host: &str, sequence: u64, lifetime_s: u64) -> DesiredState {
    let deploy = DeployRequest::new(
        format!("pull-{sequence}").parse::<DeployId>().expect("id"),
        SYSTEM.parse().expect("store path"),
        Action::Switch,
    )
    .expect("random source");
    let host: HostName = for_host.parse().expect("host");
    DesiredState::new(host, deploy, sequence, NOW, lifetime_s)
}

fn signed(state: &DesiredState, key: &SecretKey) -> Vec<u8> {
    state.sign(&[key]).to_json()
}

fn verify(
    fixture: &mut Fixture,
    bytes: &[u8],
    last_sequence: Option<u64>,
) -> Result<VerifiedDesired, RejectError> {
    let arrival = DesiredArrival {
        last_sequence,
        active_issued_at: None,
        max_age_s: DEFAULT_MAX_DESIRED_AGE_S,
    };
    let before = fixture.nonces.len();
    let result = fixture
        .verifier
        .verify_desired(bytes, &arrival, &mut fixture.nonces);
    if result.is_err() {
        assert_eq!(fixture.nonces.len(), before, "a refused state was recorded");
    }
    result
}

/// The deploy of a verified state, for the fixture's `assert_code`.
fn deploy_of(result: Result<VerifiedDesired, RejectError>) -> Result<Verified, RejectError> {
    result.map(|desired| desired.verified)
}

#[test]
fn a_state_valid_for_a_week_is_accepted_days_later() {
    let mut fixture = Fixture::new();
    let bytes = signed(&state("sambirano", 3, 7 * DAY), &fixture.ops);
    fixture.clock.set(NOW + 5 * DAY);
    let accepted = verify(&mut fixture, &bytes, Some(2)).expect("accepted");
    assert_eq!(accepted.sequence, 3);
    assert_eq!(accepted.verified.message.host, host());
    assert_eq!(accepted.verified.key.as_str(), "ops-1");
    assert_eq!(fixture.nonces.len(), 1);
}

#[test]
fn an_older_or_the_same_sequence_is_replayed() {
    let mut fixture = Fixture::new();
    let older = signed(&state("sambirano", 4, DAY), &fixture.ops);
    assert_code(deploy_of(verify(&mut fixture, &older, Some(5))), "replayed");
    let same = signed(&state("sambirano", 5, DAY), &fixture.ops);
    assert_code(deploy_of(verify(&mut fixture, &same, Some(5))), "replayed");
}

#[test]
fn a_state_replayed_after_a_restart_is_refused() {
    // The host applied sequence 6, then restarted: its nonces and the last
    // sequence come back from disk; the same bytes served again change nothing.
    let mut fixture = Fixture::new();
    let bytes = signed(&state("sambirano", 6, DAY), &fixture.ops);
    verify(&mut fixture, &bytes, Some(5)).expect("first time");
    // The verifier keeps nothing between messages: a restart is the same
    // keys over what was kept on disk, the nonces and the last sequence.
    let kept: MemoryNonceStore = std::mem::take(&mut fixture.nonces);
    fixture.nonces = kept;
    assert_code(deploy_of(verify(&mut fixture, &bytes, Some(6))), "replayed");
    // Even from a channel whose sequence it never saw (the same bytes copied
    // to another channel) it is not applied twice: the nonce was kept.
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "replayed");
}

#[test]
fn another_hosts_state_is_wrong_host() {
    let mut fixture = Fixture::new();
    let bytes = signed(&state("kelyus", 9, DAY), &fixture.ops);
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "wrong_host");
}

#[test]
fn an_expired_state_is_refused() {
    let mut fixture = Fixture::new();
    let bytes = signed(&state("sambirano", 2, DAY), &fixture.ops);
    fixture.clock.set(NOW + 2 * DAY);
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "expired");
}

#[test]
fn a_state_signed_by_a_read_only_key_is_forbidden() {
    let mut fixture = Fixture::new();
    let bytes = signed(&state("sambirano", 2, DAY), &fixture.reader);
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "forbidden");
    let bytes = signed(&state("sambirano", 2, DAY), &fixture.stranger);
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "unknown_key");
}

#[test]
fn a_window_longer_than_the_host_allows_is_bad_request() {
    let mut fixture = Fixture::new();
    let bytes = signed(
        &state("sambirano", 2, DEFAULT_MAX_DESIRED_AGE_S + 1),
        &fixture.ops,
    );
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "bad_request");
}

#[test]
fn a_deploy_message_is_not_a_desired_state_nor_the_reverse() {
    let mut fixture = Fixture::new();
    // A plain deploy (15 minutes, no sequence) served on a channel.
    let plain = crate::fixture::deploy_message()
        .sign(&[&fixture.ops])
        .to_json();
    assert_code(deploy_of(verify(&mut fixture, &plain, None)), "bad_request");
    // A desired state sent to POST /v1/deploy.
    let desired = signed(&state("sambirano", 2, 600), &fixture.ops);
    assert_code(fixture.verify_deploy(&desired), "bad_request");
}

#[test]
fn a_state_without_a_sequence_or_asking_for_a_confirm_is_bad_request() {
    let mut fixture = Fixture::new();
    let mut fields = crate::fixture::deploy_json();
    let ops = SecretKey::from_key_file_text(&fixture.ops.to_key_file_text()).expect("same key");
    let sign = |fields: &serde_json::Value, key: &SecretKey| {
        Envelope::sign(
            DESIRED_PAYLOAD_TYPE,
            serde_json::to_vec(fields).expect("json"),
            &[key],
        )
        .to_json()
    };
    assert_code(
        deploy_of(verify(&mut fixture, &sign(&fields, &ops), None)),
        "bad_request",
    );
    fields["sequence"] = json!(0);
    assert_code(
        deploy_of(verify(&mut fixture, &sign(&fields, &ops), None)),
        "bad_request",
    );
    fields["sequence"] = json!(3);
    fields["confirm_within_s"] = json!(60);
    assert_code(
        deploy_of(verify(&mut fixture, &sign(&fields, &ops), None)),
        "bad_request",
    );
    fields
        .as_object_mut()
        .expect("object")
        .remove("confirm_within_s");
    fields["sequence"] = json!(3);
    let mut doubled = serde_json::to_string(&fields).expect("json");
    doubled.insert_str(1, "\"sequence\":99,");
    let bytes =
        Envelope::sign(DESIRED_PAYLOAD_TYPE, doubled.into_bytes(), &[&fixture.ops]).to_json();
    assert_code(deploy_of(verify(&mut fixture, &bytes, None)), "bad_request");
    verify(&mut fixture, &sign(&fields, &ops), None).expect("well formed");
}
