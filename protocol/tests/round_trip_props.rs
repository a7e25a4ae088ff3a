//! Properties of signing and verification: every well-formed message signed
//! by a trusted key verifies back to itself, and no single flipped byte in the
//! payload, the signature or the envelope as a whole is ever accepted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_protocol::{
    Action, Arrival, DeployRequest, Endpoint, Envelope, FixedClock, MemoryNonceStore, Message,
    Permissions, Request, SecretKey, TrustedKey, TrustedKeys, Verifier,
};
use proptest::prelude::*;
use serde_json::Value;

const NOW: u64 = 1_800_000_000;

struct Host {
    key: SecretKey,
    verifier: Verifier,
}

fn host(name: &str) -> Host {
    let key = SecretKey::generate("ops-1".parse().expect("name")).expect("random source");
    let trusted = TrustedKeys::new([TrustedKey {
        key: key.public_key(),
        may: Permissions::ALL,
    }])
    .expect("one key");
    let verifier = Verifier::new(
        trusted,
        name.parse().expect("host"),
        Box::new(FixedClock::new(NOW)),
    );
    Host { key, verifier }
}

fn verify(host: &Host, bytes: &[u8]) -> Result<Message, deployd_protocol::RejectError> {
    let arrival = Arrival {
        endpoint: Endpoint::Deploy,
        active_issued_at: None,
    };
    let mut nonces = MemoryNonceStore::default();
    host.verifier
        .verify(bytes, &arrival, &mut nonces)
        .map(|verified| verified.message)
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Switch),
        Just(Action::Boot),
        Just(Action::Test),
        Just(Action::DryActivate),
        Just(Action::Prepare),
    ]
}

prop_compose! {
    fn deploy_message(host: &'static str)(
        deploy_id in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",
        hash in "[0-9a-df-np-sv-z]{32}",
        name in "[a-zA-Z0-9+_?=-][a-zA-Z0-9+._?=-]{0,60}",
        action in action(),
        rev in proptest::option::of("[0-9a-f]{40}"),
        flake in proptest::option::of("[ -~]{1,80}"),
        allow_downgrade in any::<bool>(),
        retry_failed in any::<bool>(),
        confirm_within_s in proptest::option::of(1u64..=3600),
        issued_offset in 0u64..100,
        lifetime in 1u64..=900,
    ) -> Message {
        let store_path = format!("/nix/store/{hash}-{name}").parse().expect("store path");
        let mut request = DeployRequest::new(deploy_id.parse().expect("id"), store_path, action)
            .expect("random source");
        request.rev = rev.map(|rev| rev.parse().expect("rev"));
        request.flake = flake;
        request.allow_downgrade = allow_downgrade;
        request.retry_failed = retry_failed;
        request.confirm_within_s = confirm_within_s;
        Message::new(host.parse().expect("host"), Request::Deploy(request), NOW - issued_offset, lifetime)
    }
}

/// Re-encodes an envelope with its payload or signature bytes changed.
fn with_changed(bytes: &[u8], field: &str, change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut envelope: Value = serde_json::from_slice(bytes).expect("envelope");
    let slot = if field == "payload" {
        &mut envelope["payload"]
    } else {
        &mut envelope["signatures"][0]["sig"]
    };
    let mut raw = STANDARD
        .decode(slot.as_str().expect("base64 text"))
        .expect("base64");
    change(&mut raw);
    *slot = Value::String(STANDARD.encode(raw));
    serde_json::to_vec(&envelope).expect("json")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_signed_message_round_trips(message in deploy_message("sambirano")) {
        let host = host("sambirano");
        let bytes = message.sign(&[&host.key]).to_json();
        prop_assert_eq!(Envelope::parse(&bytes).expect("parse").to_json(), bytes.clone());
        prop_assert_eq!(verify(&host, &bytes).expect("verifies"), message);
    }

    #[test]
    fn a_flipped_payload_byte_is_rejected(
        message in deploy_message("sambirano"),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let host = host("sambirano");
        let bytes = message.sign(&[&host.key]).to_json();
        let tampered = with_changed(&bytes, "payload", |raw| {
            let at = index.index(raw.len());
            raw[at] ^= mask;
        });
        let error = verify(&host, &tampered).expect_err("tampered payload accepted");
        prop_assert_eq!(error.code().as_str(), "bad_signature");
    }

    #[test]
    fn a_flipped_signature_byte_is_rejected(
        message in deploy_message("sambirano"),
        index in 0usize..64,
        mask in 1u8..=255,
    ) {
        let host = host("sambirano");
        let bytes = message.sign(&[&host.key]).to_json();
        let tampered = with_changed(&bytes, "sig", |raw| raw[index] ^= mask);
        let error = verify(&host, &tampered).expect_err("tampered signature accepted");
        prop_assert_eq!(error.code().as_str(), "bad_signature");
    }

    #[test]
    fn a_flipped_envelope_byte_is_never_accepted(
        message in deploy_message("sambirano"),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let host = host("sambirano");
        let mut bytes = message.sign(&[&host.key]).to_json();
        let at = index.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(verify(&host, &bytes).is_err());
    }
}
