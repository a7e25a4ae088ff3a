//! Threat: a message made to be used later (or a sender's clock far ahead).

use crate::fixture::{assert_code, deploy_message, Fixture};

#[test]
fn a_message_from_the_future_is_not_yet_valid() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    fixture.clock.set(message.issued_at - 121);
    assert_code(
        fixture.verify_deploy(&message.sign(&[&fixture.ops]).to_json()),
        "not_yet_valid",
    );
    assert!(fixture.nonces.is_empty());
}
