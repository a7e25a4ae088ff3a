//! Threat: a key trusted for one thing used for another, or a message valid
//! for one endpoint sent to another.

use deployd_protocol::{DeployRef, Endpoint, Message, ReadRequest, Request};

use crate::fixture::{assert_code, deploy_message, host, Fixture, NOW};

#[test]
fn a_read_only_key_may_not_deploy() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.reader]).to_json();
    let error = assert_code(fixture.verify_deploy(&bytes), "forbidden");
    assert!(error.message().contains("reader-1"), "{}", error.message());
    assert!(fixture.nonces.is_empty());
}

#[test]
fn a_read_only_key_may_not_confirm_or_roll_back() {
    let mut fixture = Fixture::new();
    let id = "deploy-1".parse().expect("id");
    let confirm = Message::new(
        host(),
        Request::Confirm(DeployRef::new(id).expect("nonce")),
        NOW,
        60,
    );
    let id = "deploy-1".parse().expect("id");
    let bytes = confirm.sign(&[&fixture.reader]).to_json();
    assert_code(
        fixture.verify_at(&bytes, Endpoint::Confirm { deploy_id: &id }, None),
        "forbidden",
    );
    let rollback = Message::new(
        host(),
        Request::Rollback(DeployRef::new(id.clone()).expect("nonce")),
        NOW,
        60,
    );
    let bytes = rollback.sign(&[&fixture.reader]).to_json();
    assert_code(
        fixture.verify_at(&bytes, Endpoint::Rollback, None),
        "forbidden",
    );
}

#[test]
fn a_deploy_sent_to_the_rollback_endpoint_is_forbidden() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let error = assert_code(
        fixture.verify_at(&bytes, Endpoint::Rollback, None),
        "forbidden",
    );
    assert!(
        error.message().contains("deploy message"),
        "{}",
        error.message()
    );
}

#[test]
fn a_confirm_for_another_deploy_is_forbidden() {
    let mut fixture = Fixture::new();
    let signed_for = "deploy-1".parse().expect("id");
    let confirm = Message::new(
        host(),
        Request::Confirm(DeployRef::new(signed_for).expect("nonce")),
        NOW,
        60,
    );
    let other = "deploy-2".parse().expect("id");
    let bytes = confirm.sign(&[&fixture.ops]).to_json();
    assert_code(
        fixture.verify_at(&bytes, Endpoint::Confirm { deploy_id: &other }, None),
        "forbidden",
    );
}

#[test]
fn a_read_for_another_path_is_forbidden() {
    let mut fixture = Fixture::new();
    let read = Message::new(
        host(),
        Request::Read(ReadRequest::new("GET", "/v1/status")),
        NOW,
        60,
    );
    let bytes = read.sign(&[&fixture.reader]).to_json();
    let elsewhere = Endpoint::Read {
        method: "GET",
        path: "/v1/deploys",
    };
    assert_code(fixture.verify_at(&bytes, elsewhere, None), "forbidden");
    let other_method = Endpoint::Read {
        method: "POST",
        path: "/v1/status",
    };
    assert_code(fixture.verify_at(&bytes, other_method, None), "forbidden");
}
