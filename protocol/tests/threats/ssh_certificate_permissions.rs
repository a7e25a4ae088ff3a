//! Threat: a certificate from a CA trusted to deploy but not to roll back
//! (`may` without `rollback`) used to sign a rollback: what a CA's
//! certificates may do is the CA's `may`, whatever they otherwise pass.

use deployd_protocol::{Endpoint, Permission, Permissions};

use crate::fixture::assert_code;
use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, rollback_message, CertificateSpec, SshIdentity,
};

#[test]
fn a_certificate_whose_ca_may_not_roll_back_cannot_roll_back() {
    let ca = ed25519_key();
    let may: Permissions = [Permission::Deploy, Permission::Read].into_iter().collect();
    let mut host = ca_host("sambirano", &ca, may);
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let error = assert_code(
        host.verify_at(
            &identity.envelope(&rollback_message("sambirano")),
            Endpoint::Rollback,
            None,
        ),
        "forbidden",
    );
    assert!(error.message().contains("Rollback"), "{}", error.message());
    assert!(host.nonces.is_empty());
    host.verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("it may deploy");
}
