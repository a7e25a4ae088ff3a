//! The baseline: a well-formed message passes every check, so each rejection
//! elsewhere is caused by the one thing its test breaks.

use deployd_protocol::{DeployRef, Endpoint, Message, ReadRequest, Request};

use crate::fixture::{deploy_message, host, Fixture, NOW};

#[test]
fn a_valid_deploy_is_accepted_and_its_nonce_recorded() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    let verified = fixture
        .verify_deploy(&message.sign(&[&fixture.ops]).to_json())
        .expect("valid deploy");
    assert_eq!(verified.key.as_str(), "ops-1");
    assert_eq!(verified.message, message);
    assert_eq!(fixture.nonces.len(), 1);
}

#[test]
fn a_valid_confirm_rollback_and_read_are_accepted() {
    let mut fixture = Fixture::new();
    let id = "deploy-1".parse().expect("id");
    let confirm = Message::new(
        host(),
        Request::Confirm(DeployRef::new(id).expect("nonce")),
        NOW,
        60,
    );
    let id = "deploy-1".parse().expect("id");
    let bytes = confirm.sign(&[&fixture.ops]).to_json();
    fixture
        .verify_at(&bytes, Endpoint::Confirm { deploy_id: &id }, None)
        .expect("confirm");

    let rollback_id = "rollback-1".parse().expect("id");
    let rollback = Message::new(
        host(),
        Request::Rollback(DeployRef::new(rollback_id).expect("nonce")),
        NOW,
        60,
    );
    let bytes = rollback.sign(&[&fixture.deployer]).to_json();
    let verified = fixture
        .verify_at(&bytes, Endpoint::Rollback, None)
        .expect("rollback");
    assert_eq!(verified.key.as_str(), "ci-1");

    let read = Message::new(
        host(),
        Request::Read(ReadRequest::new("GET", "/v1/status")),
        NOW,
        60,
    );
    let bytes = read.sign(&[&fixture.reader]).to_json();
    let endpoint = Endpoint::Read {
        method: "GET",
        path: "/v1/status",
    };
    fixture.verify_at(&bytes, endpoint, None).expect("read");
    // A read has no nonce, so it can be repeated inside its window.
    fixture
        .verify_at(&bytes, endpoint, None)
        .expect("read again");
    assert_eq!(fixture.nonces.len(), 2);
}

#[test]
fn the_clock_skew_is_tolerated_on_both_sides() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    fixture.clock.set(message.issued_at - 120);
    fixture
        .verify_deploy(&message.sign(&[&fixture.ops]).to_json())
        .expect("early by 2 minutes");
    let message = deploy_message();
    fixture.clock.set(message.expires_at + 120);
    fixture
        .verify_deploy(&message.sign(&[&fixture.ops]).to_json())
        .expect("late by 2 minutes");
}
