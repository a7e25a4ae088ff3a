//! Threat: a rollout whose fields say two things at once, so that what a
//! host does may differ from what the signer read: a host's entry that
//! repeats a shared field or names a host, a `host` beside `hosts`, or a
//! key given twice in one JSON object. Each is a malformed payload.

use deployd_protocol::{Envelope, ROLLOUT_PAYLOAD_TYPE};
use serde_json::{json, Value};

use crate::fixture::{assert_code, Fixture, NOW, SYSTEM};

const OTHER_SYSTEM: &str =
    "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-23.11";

fn entry(nonce: &str) -> Value {
    json!({"nonce": nonce.repeat(32), "deploy_id": "deploy-1", "store_path": SYSTEM})
}

fn rollout(hosts: Value) -> Value {
    json!({
        "kind": "deploy",
        "issued_at": NOW,
        "expires_at": NOW + 300,
        "action": "switch",
        "hosts": hosts,
    })
}

fn signed_text(fixture: &Fixture, text: &str) -> Vec<u8> {
    Envelope::sign(
        ROLLOUT_PAYLOAD_TYPE,
        text.as_bytes().to_vec(),
        &[&fixture.ops],
    )
    .to_json()
}

fn signed(fixture: &Fixture, value: &Value) -> Vec<u8> {
    signed_text(fixture, &value.to_string())
}

#[test]
fn the_well_formed_rollout_is_accepted() {
    let mut fixture = Fixture::new();
    let bytes = signed(
        &fixture,
        &rollout(json!({"sambirano": entry("a"), "kelyus": entry("b")})),
    );
    fixture.verify_deploy(&bytes).expect("well formed");
}

#[test]
fn a_host_entry_repeating_a_shared_field_is_refused() {
    let mut fixture = Fixture::new();
    let mut mine = entry("a");
    mine["action"] = "boot".into();
    let bytes = signed(&fixture, &rollout(json!({ "sambirano": mine })));
    let error = assert_code(fixture.verify_deploy(&bytes), "bad_request");
    assert!(
        error.message().contains("repeats a shared field"),
        "{}",
        error.message()
    );
}

#[test]
fn a_host_entry_naming_a_host_is_refused() {
    let mut fixture = Fixture::new();
    let mut mine = entry("a");
    mine["host"] = "kelyus".into();
    let bytes = signed(&fixture, &rollout(json!({ "sambirano": mine })));
    assert_code(fixture.verify_deploy(&bytes), "bad_request");
}

#[test]
fn a_host_beside_the_hosts_is_refused() {
    let mut fixture = Fixture::new();
    let mut payload = rollout(json!({ "sambirano": entry("a") }));
    payload["host"] = "sambirano".into();
    let bytes = signed(&fixture, &payload);
    let error = assert_code(fixture.verify_deploy(&bytes), "bad_request");
    assert!(error.message().contains("not host"), "{}", error.message());
}

#[test]
fn a_host_entry_given_twice_is_refused() {
    let mut fixture = Fixture::new();
    let first = entry("a").to_string();
    let mut second = entry("b");
    second["store_path"] = OTHER_SYSTEM.into();
    let text = format!(
        r#"{{"kind":"deploy","issued_at":{NOW},"expires_at":{},"action":"switch","hosts":{{"sambirano":{first},"sambirano":{second}}}}}"#,
        NOW + 300
    );
    let error = assert_code(
        fixture.verify_deploy(&signed_text(&fixture, &text)),
        "bad_request",
    );
    assert!(
        error.message().contains("given twice"),
        "{}",
        error.message()
    );
}

#[test]
fn a_shared_field_given_twice_is_refused() {
    let mut fixture = Fixture::new();
    let text = format!(
        r#"{{"kind":"deploy","issued_at":{NOW},"expires_at":{},"action":"switch","action":"boot","hosts":{{"sambirano":{}}}}}"#,
        NOW + 300,
        entry("a")
    );
    let error = assert_code(
        fixture.verify_deploy(&signed_text(&fixture, &text)),
        "bad_request",
    );
    assert!(
        error.message().contains("given twice"),
        "{}",
        error.message()
    );
}

#[test]
fn a_field_given_twice_in_a_host_entry_is_refused() {
    let mut fixture = Fixture::new();
    let text = format!(
        r#"{{"kind":"deploy","issued_at":{NOW},"expires_at":{},"action":"switch","hosts":{{"sambirano":{{"nonce":"{}","deploy_id":"deploy-1","store_path":"{SYSTEM}","store_path":"{OTHER_SYSTEM}"}}}}}}"#,
        NOW + 300,
        "a".repeat(32),
    );
    let error = assert_code(
        fixture.verify_deploy(&signed_text(&fixture, &text)),
        "bad_request",
    );
    assert!(
        error.message().contains("given twice"),
        "{}",
        error.message()
    );
}
