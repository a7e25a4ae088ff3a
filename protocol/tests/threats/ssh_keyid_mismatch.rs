//! Threat: an SSH signature whose `keyid` names another key than the one in
//! its SSHSIG blob: a stranger's signature filed under a trusted key's
//! fingerprint, or a trusted key's under another name, or a certificate
//! under its CA's fingerprint. The keyid must be the fingerprint of the key
//! that signed.

use deployd_protocol::{pre_authentication_encoding, Permissions, PAYLOAD_TYPE};

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, envelope_with, key_host, CertificateSpec, SshIdentity,
};

/// `signer`'s signature of a deploy to sambirano, filed under `keyid`.
fn filed_under(signer: &SshIdentity, keyid: &str) -> Vec<u8> {
    let payload = deploy_message("sambirano").to_payload_bytes();
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    envelope_with(keyid, PAYLOAD_TYPE, payload, signer.sshsig(&pae))
}

#[test]
fn a_stranger_signature_under_a_trusted_fingerprint_is_bad() {
    let trusted = SshIdentity::plain(ed25519_key());
    let stranger = SshIdentity::plain(ed25519_key());
    let mut host = key_host("sambirano", &trusted.key.public_key(), "", Permissions::ALL);
    let error = assert_code(
        host.verify_deploy(&filed_under(&stranger, &trusted.fingerprint())),
        "bad_signature",
    );
    assert!(
        error.message().contains("not the keyid"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}

#[test]
fn a_trusted_signature_under_another_fingerprint_is_refused() {
    let trusted = SshIdentity::plain(ed25519_key());
    let other = SshIdentity::plain(ed25519_key());
    let mut host = key_host("sambirano", &trusted.key.public_key(), "", Permissions::ALL);
    assert_code(
        host.verify_deploy(&filed_under(&trusted, &other.fingerprint())),
        "unknown_key",
    );

    // With a CA trusted, any fingerprint may be a certified key's, so the
    // blob is checked and found not to match.
    let ca = ed25519_key();
    let certified = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    assert_code(
        host.verify_deploy(&filed_under(&certified, &other.fingerprint())),
        "bad_signature",
    );
}

#[test]
fn a_certificate_under_its_ca_fingerprint_is_bad() {
    let ca = ed25519_key();
    let certified = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let ca_fingerprint = SshIdentity::plain(ca.clone()).fingerprint();
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    assert_code(
        host.verify_deploy(&filed_under(&certified, &ca_fingerprint)),
        "bad_signature",
    );
}
