//! Threat: a payload changed in transit (another store path, another host).
//! The signature is over the exact payload bytes, so any change breaks it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::fixture::{assert_code, deploy_message, envelope_value, Fixture};

#[test]
fn a_changed_store_path_breaks_the_signature() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    let text = String::from_utf8(payload).expect("utf-8");
    let evil = text.replace(
        "0c8rfq3blmslvm3w5qd4ymrhng1nkdk9",
        "1c8rfq3blmslvm3w5qd4ymrhng1nkdk9",
    );
    assert_ne!(text, evil);
    envelope["payload"] = Value::String(STANDARD.encode(evil));
    let tampered = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&tampered), "bad_signature");
    assert!(fixture.nonces.is_empty());
}

#[test]
fn re_serialised_json_with_the_same_meaning_is_not_the_signed_bytes() {
    // Sign bytes, not structs: whitespace added to the payload changes the
    // bytes, so the signature no longer holds even though the JSON means the same.
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    let payload = STANDARD
        .decode(envelope["payload"].as_str().expect("payload"))
        .expect("base64");
    let pretty: Value = serde_json::from_slice(&payload).expect("payload json");
    envelope["payload"] =
        Value::String(STANDARD.encode(serde_json::to_vec_pretty(&pretty).expect("json")));
    let tampered = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&tampered), "bad_signature");
}
