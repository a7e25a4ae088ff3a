//! Threat: the envelope's payload type changed. It is part of what is signed
//! (the pre-authentication encoding), so a changed type breaks the signature;
//! a message really signed under another type is refused after verification.

use serde_json::Value;

use crate::fixture::{assert_code, deploy_json, deploy_message, envelope_value, Fixture};
use deployd_protocol::Envelope;

#[test]
fn a_changed_payload_type_breaks_the_signature() {
    let mut fixture = Fixture::new();
    let bytes = deploy_message().sign(&[&fixture.ops]).to_json();
    let mut envelope = envelope_value(&bytes);
    envelope["payloadType"] = Value::String("application/vnd.in-toto+json".into());
    let tampered = serde_json::to_vec(&envelope).expect("json");
    assert_code(fixture.verify_deploy(&tampered), "bad_signature");
    assert!(fixture.nonces.is_empty());
}

#[test]
fn a_message_signed_under_another_type_is_refused() {
    // A trusted key's signature over another protocol's payload must not be
    // usable as a deploy.
    let mut fixture = Fixture::new();
    let payload = serde_json::to_vec(&deploy_json()).expect("json");
    let envelope = Envelope::sign("application/vnd.in-toto+json", payload, &[&fixture.ops]);
    let error = assert_code(fixture.verify_deploy(&envelope.to_json()), "bad_request");
    assert!(
        error.message().contains("payload type"),
        "{}",
        error.message()
    );
}
