//! Threat: a certificate used after its validity, say one that leaked from
//! a laptop last week. `valid_before` is the first second it is invalid
//! (`PROTOCOL.certkeys`), and no clock skew is granted.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity, NOW};

fn certificate_valid_before(valid_before: u64) -> (ssh_key::PrivateKey, SshIdentity) {
    let ca = ed25519_key();
    let spec = CertificateSpec {
        valid_after: NOW - 3600,
        valid_before,
        ..CertificateSpec::default()
    };
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &spec);
    (ca, identity)
}

#[test]
fn an_expired_certificate_is_expired() {
    let (ca, identity) = certificate_valid_before(NOW - 60);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let error = assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "expired",
    );
    assert!(
        error.message().contains("certificate"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}

#[test]
fn a_certificate_is_expired_from_its_valid_before() {
    let (ca, identity) = certificate_valid_before(NOW);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "expired",
    );
}

#[test]
fn a_certificate_is_valid_until_the_second_before() {
    let (ca, identity) = certificate_valid_before(NOW + 1);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("still valid");
}

#[test]
fn a_certificate_that_expires_inside_the_message_window_is_expired() {
    // The message is valid until NOW + 300; its certificate only until
    // NOW + 60. A minute later the message is still in its window.
    let (ca, identity) = certificate_valid_before(NOW + 60);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let bytes = identity.envelope(&deploy_message("sambirano"));
    host.clock.set(NOW + 120);
    let error = assert_code(host.verify_deploy(&bytes), "expired");
    assert!(
        error.message().contains("certificate"),
        "{}",
        error.message()
    );
}
