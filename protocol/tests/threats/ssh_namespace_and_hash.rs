//! Threat: a valid SSH signature made for something else, say a signed git
//! commit or a file (`ssh-keygen -Y sign -n git`), replayed as a deploy
//! signature; or one whose message hash is sha256, which deployd does not
//! take. The signature verifies for what it was made for; it is refused
//! here all the same.

use deployd_protocol::{pre_authentication_encoding, Message, Permissions, PAYLOAD_TYPE};
use ssh_key::HashAlg;

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, envelope_with, key_host, CertificateSpec, SshHost,
    SshIdentity, SshsigOptions,
};

fn signed_with(identity: &SshIdentity, message: &Message, options: SshsigOptions<'_>) -> Vec<u8> {
    let payload = message.to_payload_bytes();
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    let blob = identity.sshsig_with(&pae, options);
    envelope_with(&identity.fingerprint(), PAYLOAD_TYPE, payload, blob)
}

const GIT: SshsigOptions<'static> = SshsigOptions {
    namespace: "git",
    hash: HashAlg::Sha512,
};
const SHA256: SshsigOptions<'static> = SshsigOptions {
    namespace: "deployd",
    hash: HashAlg::Sha256,
};

fn refused_by_both_kinds_of_trust(options: SshsigOptions<'_>, why: &str) {
    let key = SshIdentity::plain(ed25519_key());
    let mut key_trusting = key_host("sambirano", &key.key.public_key(), "", Permissions::ALL);
    let ca = ed25519_key();
    let certified = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let mut ca_trusting = ca_host("sambirano", &ca, Permissions::ALL);
    let cases: [(&SshIdentity, &mut SshHost); 2] =
        [(&key, &mut key_trusting), (&certified, &mut ca_trusting)];
    for (identity, host) in cases {
        let bytes = signed_with(identity, &deploy_message("sambirano"), options);
        let error = assert_code(host.verify_deploy(&bytes), "bad_signature");
        assert!(error.message().contains(why), "{}", error.message());
        assert!(host.nonces.is_empty());
    }
}

#[test]
fn a_signature_for_another_namespace_is_refused() {
    refused_by_both_kinds_of_trust(GIT, "namespace \"git\"");
}

#[test]
fn a_sha256_signature_is_refused() {
    refused_by_both_kinds_of_trust(SHA256, "sha256");
}
