//! Threat: a huge body meant to exhaust memory or time. The size is checked
//! before anything is parsed.

use deployd_protocol::MAX_ENVELOPE_BYTES;

use crate::fixture::{assert_code, Fixture};

#[test]
fn an_envelope_over_the_limit_is_too_large() {
    let mut fixture = Fixture::new();
    let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let error = assert_code(fixture.verify_deploy(&huge), "payload_too_large");
    assert!(
        error
            .message()
            .contains(&(MAX_ENVELOPE_BYTES + 1).to_string()),
        "{}",
        error.message()
    );
}

#[test]
fn a_signed_but_huge_payload_is_too_large() {
    let mut fixture = Fixture::new();
    let mut payload = crate::fixture::deploy_json();
    payload["flake"] = serde_json::json!("x".repeat(MAX_ENVELOPE_BYTES));
    let bytes = crate::fixture::sign_json(&payload, &[&fixture.ops]);
    assert_code(fixture.verify_deploy(&bytes), "payload_too_large");
}

#[test]
fn a_long_flake_under_the_envelope_limit_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = crate::fixture::deploy_json();
    payload["flake"] = serde_json::json!("x".repeat(1025));
    let bytes = crate::fixture::sign_json(&payload, &[&fixture.ops]);
    assert_code(fixture.verify_deploy(&bytes), "bad_request");
}
