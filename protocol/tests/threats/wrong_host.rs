//! Threat: a message signed for one host replayed against another.

use deployd_protocol::{Message, Request};

use crate::fixture::{assert_code, deploy_message, Fixture};

#[test]
fn a_message_for_another_host_is_refused() {
    let mut fixture = Fixture::new();
    let original = deploy_message();
    let Request::Deploy(request) = original.request else {
        unreachable!()
    };
    let message = Message::new(
        "kelyus".parse().expect("host"),
        Request::Deploy(request),
        original.issued_at,
        300,
    );
    let error = assert_code(
        fixture.verify_deploy(&message.sign(&[&fixture.ops]).to_json()),
        "wrong_host",
    );
    assert!(error.message().contains("kelyus"), "{}", error.message());
    assert!(fixture.nonces.is_empty());
}
