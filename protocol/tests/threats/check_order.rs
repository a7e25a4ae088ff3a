//! The checks run in the wire format's order (docs/src/design/wire-format.md): for each pair of neighbouring
//! checks, a message that fails both is rejected by the earlier one.

use deployd_protocol::{Endpoint, Message, Nonce, Request};
use serde_json::json;

use crate::fixture::{assert_code, deploy_json, deploy_message, sign_json, Fixture, NOW};

#[test]
fn an_unknown_key_is_reported_before_a_malformed_payload() {
    let mut fixture = Fixture::new();
    let bytes = crate::fixture::sign_bytes(b"not json".to_vec(), &[&fixture.stranger]);
    assert_code(fixture.verify_deploy(&bytes), "unknown_key");
}

#[test]
fn a_bad_signature_is_reported_before_a_malformed_payload() {
    // The payload is never parsed before its signature verifies.
    let mut fixture = Fixture::new();
    let bytes = crate::fixture::sign_bytes(b"not json".to_vec(), &[&fixture.stranger]);
    let mut envelope = crate::fixture::envelope_value(&bytes);
    envelope["signatures"][0]["keyid"] = json!("ops-1");
    assert_code(
        fixture.verify_deploy(&serde_json::to_vec(&envelope).expect("json")),
        "bad_signature",
    );
}

#[test]
fn a_malformed_payload_is_reported_before_a_forbidden_kind() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["surprise"] = json!(true);
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.reader])),
        "bad_request",
    );
}

#[test]
fn a_forbidden_kind_is_reported_before_a_wrong_host() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["host"] = json!("kelyus");
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.reader])),
        "forbidden",
    );
}

#[test]
fn a_wrong_host_is_reported_before_an_expired_window() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["host"] = json!("kelyus");
    fixture.clock.set(NOW + 3600);
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "wrong_host",
    );
}

#[test]
fn an_expired_window_is_reported_before_a_replayed_nonce() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    let bytes = message.sign(&[&fixture.ops]).to_json();
    fixture.verify_deploy(&bytes).expect("first time");
    fixture.clock.set(message.expires_at + 3600);
    assert_code(fixture.verify_deploy(&bytes), "expired");
}

#[test]
fn a_replayed_nonce_is_reported_before_a_malformed_store_path() {
    let mut fixture = Fixture::new();
    let first = deploy_json();
    fixture
        .verify_deploy(&sign_json(&first, &[&fixture.ops]))
        .expect("first");
    let mut second = first.clone();
    second["store_path"] = json!("/etc/passwd");
    assert_code(
        fixture.verify_deploy(&sign_json(&second, &[&fixture.ops])),
        "replayed",
    );
}

#[test]
fn a_malformed_store_path_is_reported_before_a_downgrade() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["store_path"] = json!("/etc/passwd");
    let bytes = sign_json(&payload, &[&fixture.ops]);
    assert_code(
        fixture.verify_at(&bytes, Endpoint::Deploy, Some(NOW + 60)),
        "invalid_store_path",
    );
}

#[test]
fn a_downgrade_needs_one_key_that_may_both_deploy_and_downgrade() {
    // One signer may deploy, another may downgrade: neither may do both.
    let mut fixture = Fixture::new();
    let mut message: Message = deploy_message();
    if let Request::Deploy(deploy) = &mut message.request {
        deploy.allow_downgrade = true;
        deploy.nonce = Nonce::generate().expect("random source");
    }
    let bytes = message
        .sign(&[&fixture.deployer, &fixture.downgrader])
        .to_json();
    assert_code(
        fixture.verify_at(&bytes, Endpoint::Deploy, Some(NOW + 60)),
        "downgrade",
    );
}
