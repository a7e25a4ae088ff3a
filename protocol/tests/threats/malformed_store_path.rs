//! Threat: a store path that escapes the store, names a file inside a path,
//! or is not one Nix could have made. Each is `invalid_store_path`, checked
//! only after the signature, host, window and nonce.

use deployd_protocol::{StorePath, StorePathRule};
use serde_json::json;

use crate::fixture::{assert_code, deploy_json, sign_json, Fixture};

const HASH: &str = "0c8rfq3blmslvm3w5qd4ymrhng1nkdk9";

fn rule(path: &str) -> StorePathRule {
    path.parse::<StorePath>().expect_err(path).reason
}

#[test]
fn each_malformed_path_breaks_its_rule() {
    let cases = [
        ("/etc/passwd", StorePathRule::NotInStore),
        (
            "nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
            StorePathRule::NotInStore,
        ),
        (
            "/nix//store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
            StorePathRule::NotInStore,
        ),
        ("/nix/store", StorePathRule::NotInStore),
        ("/nix/store/../../etc/shadow", StorePathRule::NotTopLevel),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x/..",
            StorePathRule::NotTopLevel,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x/bin/sh",
            StorePathRule::NotTopLevel,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x/",
            StorePathRule::NotTopLevel,
        ),
        (
            "/nix/store//0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
            StorePathRule::NotTopLevel,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk-x",
            StorePathRule::HashLength,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk99-x",
            StorePathRule::HashLength,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9",
            StorePathRule::HashLength,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdke-x",
            StorePathRule::HashCharacter,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdkt-x",
            StorePathRule::HashCharacter,
        ),
        (
            "/nix/store/0C8RFQ3BLMSLVM3W5QD4YMRHNG1NKDK9-x",
            StorePathRule::HashCharacter,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-",
            StorePathRule::NameLength,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-..",
            StorePathRule::DotName,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-.",
            StorePathRule::DotName,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-a b",
            StorePathRule::NameCharacter,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-a\0b",
            StorePathRule::NameCharacter,
        ),
        (
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-é",
            StorePathRule::NameCharacter,
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(rule(path), expected, "{path}");
    }
    let long = format!("/nix/store/{HASH}-{}", "n".repeat(212));
    assert_eq!(rule(&long), StorePathRule::NameLength);
    let longest = format!("/nix/store/{HASH}-{}", "n".repeat(211));
    assert!(longest.parse::<StorePath>().is_ok());
}

#[test]
fn a_signed_deploy_with_a_path_outside_the_store_is_invalid_store_path() {
    let mut fixture = Fixture::new();
    for path in [
        "/nix/store/../../etc/shadow".to_string(),
        format!("/nix/store/{HASH}-x/../y"),
        format!("/nix/store/{}e-x", &HASH[..31]),
    ] {
        let mut payload = deploy_json();
        payload["store_path"] = json!(path);
        payload["nonce"] = json!(deployd_protocol::Nonce::generate()
            .expect("random")
            .as_str());
        assert_code(
            fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
            "invalid_store_path",
        );
    }
    assert!(fixture.nonces.is_empty());
}

#[test]
fn the_store_path_is_checked_after_the_host() {
    let mut fixture = Fixture::new();
    let mut payload = deploy_json();
    payload["store_path"] = json!("/etc/passwd");
    payload["host"] = json!("kelyus");
    assert_code(
        fixture.verify_deploy(&sign_json(&payload, &[&fixture.ops])),
        "wrong_host",
    );
}
