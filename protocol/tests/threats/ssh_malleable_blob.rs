//! Threat: an SSHSIG altered where no signature covers it, the public key
//! field and the framing of the signature field, so that one signature has
//! many blobs (and a replay cache or log keyed on the blob is fooled). The
//! key's inner length prefix changed, bytes after the key, bytes after the
//! signature: each is refused, as OpenSSH refuses it.

use deployd_protocol::{pre_authentication_encoding, Permissions, PAYLOAD_TYPE};

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    deploy_message, ed25519_key, envelope_with, key_host, signature_blob, sshsig_blob, SshIdentity,
    SshsigFields,
};

/// A deploy signed by `identity`, with its SSHSIG's key and signature
/// fields edited.
fn with_edited_fields(
    identity: &SshIdentity,
    edit_key: impl FnOnce(&mut Vec<u8>),
    edit_signature: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let payload = deploy_message("sambirano").to_payload_bytes();
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    let signed = ssh_key::SshSig::signed_data("deployd", ssh_key::HashAlg::Sha512, &pae)
        .expect("signed data");
    let mut public_key = identity.public_blob();
    edit_key(&mut public_key);
    let mut signature = signature_blob(&identity.key.sign(&signed));
    edit_signature(&mut signature);
    let blob = sshsig_blob(SshsigFields {
        public_key: &public_key,
        namespace: "deployd",
        hash: "sha512",
        signature: &signature,
    });
    envelope_with(&identity.fingerprint(), PAYLOAD_TYPE, payload, blob)
}

fn identity_and_host() -> (SshIdentity, crate::ssh_fixture::SshHost) {
    let identity = SshIdentity::plain(ed25519_key());
    let host = key_host(
        "sambirano",
        &identity.key.public_key(),
        "",
        Permissions::ALL,
    );
    (identity, host)
}

#[test]
fn the_unedited_blob_is_accepted() {
    let (identity, mut host) = identity_and_host();
    host.verify_deploy(&with_edited_fields(&identity, |_| {}, |_| {}))
        .expect("as signed");
}

#[test]
fn a_changed_length_prefix_inside_the_key_is_refused() {
    let (identity, mut host) = identity_and_host();
    // `string "ssh-ed25519"` (15 bytes), then the key's own length, 32.
    let bytes = with_edited_fields(
        &identity,
        |key| {
            assert_eq!(key[15..19], 32u32.to_be_bytes());
            key[17] = 0x01;
        },
        |_| {},
    );
    let error = assert_code(host.verify_deploy(&bytes), "bad_signature");
    assert!(
        error.message().contains("OpenSSH's encoding"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}

#[test]
fn bytes_after_the_key_are_refused() {
    let (identity, mut host) = identity_and_host();
    let bytes = with_edited_fields(&identity, |key| key.push(0), |_| {});
    assert_code(host.verify_deploy(&bytes), "bad_signature");
}

#[test]
fn bytes_after_the_signature_are_refused() {
    let (identity, mut host) = identity_and_host();
    let bytes = with_edited_fields(&identity, |_| {}, |signature| signature.push(0));
    let error = assert_code(host.verify_deploy(&bytes), "bad_signature");
    assert!(
        error.message().contains("after the signature"),
        "{}",
        error.message()
    );
}
