//! Threat: a certificate that names a trusted CA but whose CA signature does
//! not cover it: a byte of the signature flipped, or a principal edited
//! after signing to name this host. The SSHSIG itself is valid; the
//! certificate is not.

use deployd_protocol::{pre_authentication_encoding, Permissions, PAYLOAD_TYPE};

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, envelope_with, signature_blob, sshsig_blob,
    CertificateSpec, SshIdentity, SshsigFields,
};

/// A deploy to sambirano signed by `identity`, its certificate's bytes
/// changed by `edit` before they go into the SSHSIG.
fn with_edited_certificate(identity: &SshIdentity, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut certificate = identity.public_blob();
    edit(&mut certificate);
    let payload = deploy_message("sambirano").to_payload_bytes();
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    let signed = ssh_key::SshSig::signed_data("deployd", ssh_key::HashAlg::Sha512, &pae)
        .expect("signed data");
    let blob = sshsig_blob(SshsigFields {
        public_key: &certificate,
        namespace: "deployd",
        hash: "sha512",
        signature: &signature_blob(&identity.key.sign(&signed)),
    });
    envelope_with(&identity.fingerprint(), PAYLOAD_TYPE, payload, blob)
}

#[test]
fn a_flipped_byte_in_the_ca_signature_is_bad() {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    // The certificate ends with the CA's 64-byte Ed25519 signature: flip
    // the first byte of its R.
    let bytes = with_edited_certificate(&identity, |certificate| {
        let at = certificate.len() - 64;
        certificate[at] ^= 0x01;
    });
    assert_code(host.verify_deploy(&bytes), "bad_signature");
    assert!(host.nonces.is_empty());
}

#[test]
fn a_principal_edited_after_signing_is_bad() {
    let ca = ed25519_key();
    let spec = CertificateSpec {
        principals: &["deployer@sambirana"],
        ..CertificateSpec::default()
    };
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &spec);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let bytes = with_edited_certificate(&identity, |certificate| {
        let name = b"deployer@sambirana";
        let at = certificate
            .windows(name.len())
            .position(|window| window == name)
            .expect("the principal is in the certificate");
        certificate[at + name.len() - 1] = b'o';
    });
    assert_code(host.verify_deploy(&bytes), "bad_signature");
}
