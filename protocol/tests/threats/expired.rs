//! Threat: an old message, captured and sent again after its window.

use crate::fixture::{assert_code, deploy_message, Fixture};

#[test]
fn a_message_past_its_window_and_the_skew_is_expired() {
    let mut fixture = Fixture::new();
    let message = deploy_message();
    fixture.clock.set(message.expires_at + 121);
    assert_code(
        fixture.verify_deploy(&message.sign(&[&fixture.ops]).to_json()),
        "expired",
    );
    assert!(fixture.nonces.is_empty());
}
