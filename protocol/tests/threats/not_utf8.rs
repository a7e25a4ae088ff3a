//! Threat: bytes that are not text, in the envelope or in the signed payload.

use crate::fixture::{assert_code, deploy_json, sign_bytes, Fixture};

#[test]
fn a_non_utf8_envelope_is_a_bad_request() {
    let mut fixture = Fixture::new();
    let error = assert_code(
        fixture.verify_deploy(b"{\"payloadType\": \"\xff\xfe\"}"),
        "bad_request",
    );
    assert!(error.message().contains("UTF-8"), "{}", error.message());
}

#[test]
fn a_signed_non_utf8_payload_is_a_bad_request() {
    // A valid deploy but for one byte that is not UTF-8, inside `flake`.
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["flake"] = "MARK".into();
    let text = serde_json::to_vec(&payload).expect("json");
    let at = text.windows(4).position(|w| w == b"MARK").expect("marker");
    let mut bytes = text.clone();
    bytes[at] = 0xff;
    let error = assert_code(
        fixture.verify_deploy(&sign_bytes(bytes, &[&fixture.ops])),
        "bad_request",
    );
    assert!(
        error.message().contains("payload is not UTF-8"),
        "{}",
        error.message()
    );
    // The same payload with valid text is accepted: the byte was the problem.
    fixture
        .verify_deploy(&sign_bytes(text, &[&fixture.ops]))
        .expect("valid");
}

#[test]
fn garbage_is_a_bad_request() {
    let mut fixture = Fixture::new();
    for input in [&b""[..], b"null", b"[]", b"{", b"\0\0\0"] {
        assert_code(fixture.verify_deploy(input), "bad_request");
    }
}
