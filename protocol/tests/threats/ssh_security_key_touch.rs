//! Threat: a signature from a FIDO security key made without a touch, by
//! malware on a machine where the key is plugged in. Each signature is
//! built as an authenticator builds it (application `ssh:`, flags byte,
//! counter, over `sha256(application) || flags || counter ||
//! sha256(SSHSIG signed data)`). Without the user-presence flag it is
//! refused, unless the trusted key line says `no-touch-required`; a
//! certificate always needs the touch.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, key_host, with_edited_sshsig, Authenticator,
    CertificateSpec, SshIdentity, USER_PRESENT, USER_VERIFIED,
};

/// For each kind of security key: accepted with a touch, forbidden without
/// (flags 0, or user verification alone), accepted without when the
/// trusted line says `no-touch-required`.
fn touch_is_required(make: fn() -> Authenticator) {
    let mut identity = SshIdentity::security(make());
    let public = identity.key.public_key();
    let mut host = key_host("sambirano", &public, "", Permissions::ALL);
    let verified = host
        .verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("touched");
    assert_eq!(verified.key.as_str(), identity.fingerprint());

    for flags in [0x00, USER_VERIFIED] {
        identity.set_flags(flags);
        let error = assert_code(
            host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
            "forbidden",
        );
        assert!(error.message().contains("touch"), "{}", error.message());
    }
    assert_eq!(host.nonces.len(), 1);

    identity.set_flags(0x00);
    let mut lenient = key_host("sambirano", &public, "no-touch-required", Permissions::ALL);
    lenient
        .verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("no-touch-required");
}

#[test]
fn an_sk_ed25519_signature_needs_a_touch() {
    touch_is_required(Authenticator::ed25519);
}

#[test]
fn an_sk_ecdsa_signature_needs_a_touch() {
    touch_is_required(Authenticator::ecdsa);
}

#[test]
fn a_certified_security_key_always_needs_a_touch() {
    let ca = ed25519_key();
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    for make in [Authenticator::ed25519, Authenticator::ecdsa] {
        let mut identity =
            SshIdentity::security(make()).certified(&ca, &CertificateSpec::default());
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
            .expect("touched");
        identity.set_flags(0x00);
        assert_code(
            host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
            "forbidden",
        );
    }
}

#[test]
fn flags_and_counter_are_signed() {
    // Setting the user-presence flag on a signature made without it breaks
    // the signature: the authenticator signed its flags and counter, the
    // last 5 bytes of the SSHSIG.
    let mut identity = SshIdentity::security(Authenticator::ed25519());
    let public = identity.key.public_key();
    let mut host = key_host("sambirano", &public, "", Permissions::ALL);
    identity.set_flags(0x00);
    let bytes = identity.envelope(&deploy_message("sambirano"));
    let touch_claimed = with_edited_sshsig(&bytes, |blob| {
        let flags_at = blob.len() - 5;
        assert_eq!(blob[flags_at], 0x00);
        blob[flags_at] = USER_PRESENT;
    });
    assert_code(host.verify_deploy(&touch_claimed), "bad_signature");
    let counter_changed = with_edited_sshsig(&bytes, |blob| {
        let last = blob.len() - 1;
        blob[last] ^= 0x01;
    });
    assert_code(host.verify_deploy(&counter_changed), "bad_signature");
    assert!(host.nonces.is_empty());
}
