//! The SSH baseline: a deploy signed by a trusted SSH key (ed25519 or
//! P-256) or by a key with a certificate from a trusted CA passes every
//! check, so each SSH rejection elsewhere is caused by the one thing its
//! test breaks.

use deployd_protocol::Permissions;

use crate::ssh_fixture::{
    ca_host, deploy_message, ecdsa_key, ed25519_key, key_host, trust_ca, Authenticator,
    CertificateSpec, SshHost, SshIdentity,
};

#[test]
fn a_trusted_ed25519_key_is_accepted_under_its_fingerprint() {
    let identity = SshIdentity::plain(ed25519_key());
    let mut host = key_host(
        "sambirano",
        &identity.key.public_key(),
        "",
        Permissions::ALL,
    );
    let message = deploy_message("sambirano");
    let verified = host
        .verify_deploy(&identity.envelope(&message))
        .expect("valid deploy");
    assert_eq!(verified.key.as_str(), identity.fingerprint());
    assert!(verified.key.as_str().starts_with("SHA256:"));
    assert_eq!(verified.message, message);
    assert_eq!(host.nonces.len(), 1);
}

#[test]
fn a_trusted_p256_key_is_accepted() {
    let identity = SshIdentity::plain(ecdsa_key());
    let mut host = key_host(
        "sambirano",
        &identity.key.public_key(),
        "",
        Permissions::ALL,
    );
    let verified = host
        .verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("valid deploy");
    assert_eq!(verified.key.as_str(), identity.fingerprint());
}

#[test]
fn a_certificate_from_a_trusted_ca_is_accepted_under_its_key_fingerprint() {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let message = deploy_message("sambirano");
    let verified = host
        .verify_deploy(&identity.envelope(&message))
        .expect("valid deploy");
    assert_eq!(verified.key.as_str(), identity.fingerprint());
    assert_eq!(verified.message, message);
    assert_eq!(host.nonces.len(), 1);
}

#[test]
fn a_p256_ca_certifying_a_p256_key_is_accepted() {
    let ca = ecdsa_key();
    let identity = SshIdentity::plain(ecdsa_key()).certified(&ca, &CertificateSpec::default());
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("valid deploy");
}

#[test]
fn a_certificate_from_a_ca_on_a_security_key_is_accepted() {
    // The seed's fleet CA lives on a FIDO key; older keys know only P-256.
    for ca in [Authenticator::ed25519(), Authenticator::ecdsa()] {
        let identity =
            SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
        let trusted = trust_ca(&ca.public_key(), &["deployer"], Permissions::ALL);
        let mut host = SshHost::new("sambirano", vec![], vec![trusted]);
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
            .unwrap_or_else(|error| panic!("{}", error.message()));
    }
}
