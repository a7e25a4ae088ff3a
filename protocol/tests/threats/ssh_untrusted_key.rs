//! Threat: a message signed by an SSH key the host does not trust, by a
//! certificate from a CA it does not trust, or by a certificate that a
//! trusted deploy key (not a CA) issued.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, key_host, CertificateSpec, SshIdentity,
};

#[test]
fn an_untrusted_ssh_key_is_unknown() {
    let trusted = SshIdentity::plain(ed25519_key());
    let stranger = SshIdentity::plain(ed25519_key());
    let mut host = key_host("sambirano", &trusted.key.public_key(), "", Permissions::ALL);
    let bytes = stranger.envelope(&deploy_message("sambirano"));
    let error = assert_code(host.verify_deploy(&bytes), "unknown_key");
    assert!(
        error.message().contains(&stranger.fingerprint()),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}

#[test]
fn a_certificate_from_another_ca_is_unknown() {
    let fleet_ca = ed25519_key();
    let other_ca = ed25519_key();
    let identity =
        SshIdentity::plain(ed25519_key()).certified(&other_ca, &CertificateSpec::default());
    let mut host = ca_host("sambirano", &fleet_ca, Permissions::ALL);
    let bytes = identity.envelope(&deploy_message("sambirano"));
    assert_code(host.verify_deploy(&bytes), "unknown_key");
}

#[test]
fn a_trusted_deploy_key_cannot_issue_certificates() {
    let deploy_key = ed25519_key();
    let mut host = key_host(
        "sambirano",
        deploy_key.public_key().key_data(),
        "",
        Permissions::ALL,
    );
    let identity =
        SshIdentity::plain(ed25519_key()).certified(&deploy_key, &CertificateSpec::default());
    let bytes = identity.envelope(&deploy_message("sambirano"));
    assert_code(host.verify_deploy(&bytes), "unknown_key");
}
