//! Threat: a message signed by a key the host does not trust, or one that
//! claims a trusted key's name without its secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::fixture::{assert_code, deploy_message, envelope_value, Fixture};

#[test]
fn a_stranger_key_is_unknown() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.stranger]).to_json();
    let error = assert_code(fixture.verify_deploy(&bytes), "unknown_key");
    assert!(
        error.message().contains("stranger-1"),
        "{}",
        error.message()
    );
    assert!(fixture.nonces.is_empty());
}

#[test]
fn a_stranger_claiming_a_trusted_name_has_a_bad_signature() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.stranger]).to_json();
    let mut envelope = envelope_value(&bytes);
    envelope["signatures"][0]["keyid"] = Value::String("ops-1".into());
    let forged = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&forged), "bad_signature");
    assert!(fixture.nonces.is_empty());
}

#[test]
fn a_zeroed_signature_is_bad() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    envelope["signatures"][0]["sig"] = Value::String(STANDARD.encode([0u8; 64]));
    let forged = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&forged), "bad_signature");
}
