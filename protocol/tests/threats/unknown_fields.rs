//! Threat: fields the verifier does not understand (a future or foreign
//! field that might mean something to someone), or fields of another kind.

use serde_json::json;

use crate::fixture::{assert_code, deploy_json, envelope_value, sign_json, Fixture};

#[test]
fn an_unknown_payload_field_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["substituters"] = json!(["http://evil.example"]);
    let error = assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
    assert!(
        error.message().contains("substituters"),
        "{}",
        error.message()
    );
    assert!(fixture.nonces.is_empty());
}

#[test]
fn a_field_of_another_kind_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["path"] = json!("/v1/status");
    let error = assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
    assert!(error.message().contains("path"), "{}", error.message());
}

#[test]
fn a_missing_field_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload.as_object_mut().expect("object").remove("action");
    let error = assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "bad_request",
    );
    assert!(error.message().contains("action"), "{}", error.message());
}

#[test]
fn malformed_values_are_refused() {
    let mut fixture = Fixture::new();
    for (field, value) in [
        ("action", json!("reboot")),
        ("rev", json!("HEAD")),
        ("deploy_id", json!("../etc")),
        ("nonce", json!("short")),
        ("host", json!("not a host")),
        ("issued_at", json!(-1)),
        ("confirm_within_s", json!(0)),
        ("kind", json!("shutdown")),
    ] {
        let mut payload = deploy_json();
        payload[field] = value;
        assert_code(
            fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
            "bad_request",
        );
    }
}

#[test]
fn an_unknown_envelope_field_is_refused() {
    let mut fixture = Fixture::new();
    let bytes = sign_json(&deploy_json(), &[&fixture.ops]);
    let mut envelope = envelope_value(&bytes);
    envelope["keys"] = json!(["ops-2:AAAA"]);
    let extended = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&extended), "bad_request");
}
