//! Threat: a certificate whose CA restricted it with a critical option
//! deployd does not implement (`force-command`, `source-address`): ignoring
//! the restriction would grant more than the CA did, so it is refused. The
//! one option deployd knows, `verify-required`, is honoured: the security
//! key must have verified its user (PIN), not only seen a touch; the same
//! holds for a trusted key line with the `verify-required` option.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, key_host, Authenticator, CertificateSpec, SshIdentity,
    USER_PRESENT, USER_VERIFIED,
};

fn certificate_with(
    ca: &ssh_key::PrivateKey,
    options: &[(&str, &str)],
    authenticator: Authenticator,
) -> SshIdentity {
    let spec = CertificateSpec {
        critical_options: options,
        ..CertificateSpec::default()
    };
    SshIdentity::security(authenticator).certified(ca, &spec)
}

#[test]
fn an_unknown_critical_option_is_forbidden() {
    let ca = ed25519_key();
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    for option in [
        ("force-command", "/run/current-system/sw/bin/true"),
        ("source-address", "192.0.2.0/24"),
    ] {
        let identity = certificate_with(&ca, &[option], Authenticator::ed25519());
        let error = assert_code(
            host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
            "forbidden",
        );
        assert!(error.message().contains(option.0), "{}", error.message());
    }
    assert!(host.nonces.is_empty());
}

#[test]
fn verify_required_in_a_certificate_refuses_a_touch_alone() {
    let ca = ed25519_key();
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let touched = certificate_with(&ca, &[("verify-required", "")], Authenticator::ed25519());
    let error = assert_code(
        host.verify_deploy(&touched.envelope(&deploy_message("sambirano"))),
        "forbidden",
    );
    assert!(
        error.message().contains("verify-required"),
        "{}",
        error.message()
    );

    let mut authenticator = Authenticator::ed25519();
    authenticator.flags = USER_PRESENT | USER_VERIFIED;
    let verified = certificate_with(&ca, &[("verify-required", "")], authenticator);
    host.verify_deploy(&verified.envelope(&deploy_message("sambirano")))
        .expect("touch and PIN");
}

#[test]
fn verify_required_on_a_trusted_key_refuses_a_touch_alone() {
    let mut identity = SshIdentity::security(Authenticator::ed25519());
    let public = identity.key.public_key();
    let mut host = key_host("sambirano", &public, "verify-required", Permissions::ALL);
    let error = assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "forbidden",
    );
    assert!(
        error.message().contains("verify-required"),
        "{}",
        error.message()
    );
    identity.set_flags(USER_PRESENT | USER_VERIFIED);
    host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("touch and PIN");
}
