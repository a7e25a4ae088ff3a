//! Threat: bytes that are not text, in the envelope or in the signed payload.

use crate::fixture::{assert_code, sign_bytes, Fixture};

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
    let mut fixture = Fixture::new();
    let bytes = sign_bytes(b"{\"kind\": \"deploy\xff\"}".to_vec(), &[&fixture.ops]);
    assert_code(fixture.verify_deploy(&bytes), "bad_request");
}

#[test]
fn garbage_is_a_bad_request() {
    let mut fixture = Fixture::new();
    for input in [&b""[..], b"null", b"[]", b"{", b"\0\0\0"] {
        assert_code(fixture.verify_deploy(input), "bad_request");
    }
}
