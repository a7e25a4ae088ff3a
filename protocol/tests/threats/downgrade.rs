//! Threat: an old, validly signed deploy sent to take a host back to a
//! system it already moved past. Going back needs `allow_downgrade` in the
//! signed message and a key that may downgrade.

use deployd_protocol::{Endpoint, Message, Request};

use crate::fixture::{assert_code, deploy_message, Fixture, NOW};

fn downgrade_message(allow: bool) -> Message {
    let mut message = deploy_message();
    if let Request::Deploy(deploy) = &mut message.request {
        deploy.allow_downgrade = allow;
    }
    message
}

#[test]
fn older_than_the_active_deploy_is_a_downgrade() {
    let mut fixture = Fixture::new();
    let bytes = downgrade_message(false).sign(&[&fixture.ops]).to_json();
    let error = assert_code(
        fixture.verify_at(&bytes, Endpoint::Deploy, Some(NOW + 1)),
        "downgrade",
    );
    assert!(
        error.message().contains("allow_downgrade"),
        "{}",
        error.message()
    );
    assert!(fixture.nonces.is_empty());
}

#[test]
fn allow_downgrade_without_the_permission_is_a_downgrade() {
    let mut fixture = Fixture::new();
    let bytes = downgrade_message(true).sign(&[&fixture.deployer]).to_json();
    let error = assert_code(
        fixture.verify_at(&bytes, Endpoint::Deploy, Some(NOW + 1)),
        "downgrade",
    );
    assert!(
        error.message().contains("may downgrade"),
        "{}",
        error.message()
    );
}

#[test]
fn allow_downgrade_with_the_permission_is_accepted() {
    let mut fixture = Fixture::new();
    let bytes = downgrade_message(true).sign(&[&fixture.ops]).to_json();
    fixture
        .verify_at(&bytes, Endpoint::Deploy, Some(NOW + 1))
        .expect("permitted downgrade");
}

#[test]
fn the_same_age_or_newer_is_no_downgrade() {
    let mut fixture = Fixture::new();
    let bytes = downgrade_message(false)
        .sign(&[&fixture.deployer])
        .to_json();
    fixture
        .verify_at(&bytes, Endpoint::Deploy, Some(NOW))
        .expect("same age");
    let bytes = downgrade_message(false)
        .sign(&[&fixture.deployer])
        .to_json();
    fixture
        .verify_at(&bytes, Endpoint::Deploy, Some(NOW - 1))
        .expect("newer");
}
