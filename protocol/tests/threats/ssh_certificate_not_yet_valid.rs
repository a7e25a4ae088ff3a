//! Threat: a certificate used before its validity begins (issued ahead of
//! time, or a host whose clock is behind).

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity, NOW};

fn certificate_valid_after(valid_after: u64) -> (ssh_key::PrivateKey, SshIdentity) {
    let ca = ed25519_key();
    let spec = CertificateSpec {
        valid_after,
        valid_before: NOW + 3600,
        ..CertificateSpec::default()
    };
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &spec);
    (ca, identity)
}

#[test]
fn a_certificate_not_valid_yet_is_not_yet_valid() {
    let (ca, identity) = certificate_valid_after(NOW + 60);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let error = assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "not_yet_valid",
    );
    assert!(
        error.message().contains("certificate"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}

#[test]
fn a_certificate_is_valid_from_its_valid_after() {
    let (ca, identity) = certificate_valid_after(NOW);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("valid from now");
}
