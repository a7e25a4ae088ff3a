//! Threat: a valid message captured and sent again inside its window.

use crate::fixture::{assert_code, deploy_json, deploy_message, sign_json, Fixture};

#[test]
fn the_same_envelope_twice_is_replayed() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    fixture.verify_deploy(&bytes).expect("first time");
    let error = assert_code(fixture.verify_deploy(&bytes), "replayed");
    assert!(error.message().contains("nonce"), "{}", error.message());
    assert_eq!(fixture.nonces.len(), 1);
}

#[test]
fn another_message_reusing_a_nonce_is_replayed() {
    let mut fixture = Fixture::new();
    let first = deploy_json();
    fixture
        .verify_deploy(&sign_json(&first, &[&fixture.ops]))
        .expect("first message");
    let mut second = first.clone();
    second["deploy_id"] = "deploy-2".into();
    assert_code(
        fixture.verify_deploy(&sign_json(&second, &[&fixture.ops])),
        "replayed",
    );
}

#[test]
fn a_nonce_is_kept_until_the_message_can_no_longer_be_valid() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    let bytes = message.sign(&[&fixture.ops]).to_json();
    fixture.verify_deploy(&bytes).expect("first time");
    // Pruning before the window (plus skew) ends must keep the nonce.
    fixture.nonces.prune(message.expires_at + 120);
    assert_eq!(fixture.nonces.len(), 1);
    fixture.clock.set(message.expires_at + 120);
    assert_code(fixture.verify_deploy(&bytes), "replayed");
    // After that, the message is expired anyway and the nonce can go.
    fixture.nonces.prune(message.expires_at + 121);
    assert!(fixture.nonces.is_empty());
    fixture.clock.set(message.expires_at + 121);
    assert_code(fixture.verify_deploy(&bytes), "expired");
}

#[test]
fn a_rejected_message_does_not_burn_its_nonce() {
    // Nothing changes until a message is fully verified: a deploy refused as
    // a downgrade leaves its nonce free.
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let active_later = Some(crate::fixture::NOW + 10);
    assert_code(
        fixture.verify_at(&bytes, deployd_protocol::Endpoint::Deploy, active_later),
        "downgrade",
    );
    assert!(fixture.nonces.is_empty());
}
