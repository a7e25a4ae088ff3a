//! Threat: a message with a long validity window, usable long after it was
//! made. Windows are at most 15 minutes and must end after they begin.

use serde_json::json;

use crate::fixture::{assert_code, deploy_json, sign_json, Fixture, NOW};

#[test]
fn a_window_longer_than_15_minutes_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["expires_at"] = json!(NOW + 15 * 60 + 1);
    let error = assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
    assert!(error.message().contains("window"), "{}", error.message());
    assert!(fixture.nonces.is_empty());
}

#[test]
fn exactly_15_minutes_is_allowed() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["expires_at"] = json!(NOW + 15 * 60);
    fixture
        .verify_deploy(&sign_json(&payload, &[&fixture.ops]))
        .expect("15 minutes");
}

#[test]
fn a_window_that_ends_before_it_begins_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["expires_at"] = json!(NOW - 1);
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
    payload["expires_at"] = json!(NOW);
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
}
