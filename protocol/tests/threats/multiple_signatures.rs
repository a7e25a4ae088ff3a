//! DSSE allows several signatures: any trusted one that verifies suffices, and
//! untrusted or broken ones beside it do no harm.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::fixture::{assert_code, deploy_message, envelope_value, Fixture};

#[test]
fn a_trusted_signature_among_strangers_suffices() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message()
        .sign(&[&fixture.stranger, &fixture.ops])
        .to_json();
    let verified = fixture
        .verify_deploy(&bytes)
        .expect("one trusted signature");
    assert_eq!(verified.key.as_str(), "ops-1");
}

#[test]
fn a_broken_trusted_signature_beside_a_good_one_does_no_harm() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message()
        .sign(&[&fixture.deployer, &fixture.ops])
        .to_json();
    let mut envelope = envelope_value(&bytes);
    envelope["signatures"][0]["sig"] = Value::String(STANDARD.encode([7u8; 64]));
    let verified = fixture
        .verify_deploy(&serde_json::to_vec(&envelope).expect("json"))
        .expect("the good signature suffices");
    assert_eq!(verified.key.as_str(), "ops-1");
}

#[test]
fn the_authorising_key_is_one_that_may_sign_the_kind() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message()
        .sign(&[&fixture.reader, &fixture.deployer])
        .to_json();
    let verified = fixture
        .verify_deploy(&bytes)
        .expect("the deployer may deploy");
    assert_eq!(verified.key.as_str(), "ci-1");
}

#[test]
fn two_signatures_naming_one_key_are_refused() {
    // Each trusted key is verified once: a repeated key id would only cost
    // the host time.
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    let one = envelope["signatures"][0].clone();
    envelope["signatures"] = json!([one.clone(), one]);
    let error = assert_code(
        fixture.verify_deploy(&serde_json::to_vec(&envelope).expect("json")),
        "bad_request",
    );
    assert!(error.message().contains("same key"), "{}", error.message());
}

#[test]
fn too_many_signatures_are_refused() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    let signatures: Vec<_> = (0..9)
        .map(|index| json!({"keyid": format!("k{index}"), "sig": envelope["signatures"][0]["sig"]}))
        .collect();
    envelope["signatures"] = json!(signatures);
    assert_code(
        fixture.verify_deploy(&serde_json::to_vec(&envelope).expect("json")),
        "bad_request",
    );
}
