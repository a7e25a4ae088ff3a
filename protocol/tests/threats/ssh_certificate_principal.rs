//! Threat: a certificate used beyond the principals it was issued for: one
//! made for `deployer@sambirano` sent to kelyus, or one for a principal no
//! host accepts. `deployer` is accepted by every host of the fleet.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity};

fn certificate_for(ca: &ssh_key::PrivateKey, principals: &[&str]) -> SshIdentity {
    let spec = CertificateSpec {
        principals,
        ..CertificateSpec::default()
    };
    SshIdentity::plain(ed25519_key()).certified(ca, &spec)
}

#[test]
fn a_certificate_for_one_host_is_forbidden_on_another() {
    let ca = ed25519_key();
    let identity = certificate_for(&ca, &["deployer@sambirano"]);
    let mut kelyus = ca_host("kelyus", &ca, Permissions::ALL);
    let error = assert_code(
        kelyus.verify_deploy(&identity.envelope(&deploy_message("kelyus"))),
        "forbidden",
    );
    assert!(
        error.message().contains("deployer@sambirano"),
        "{}",
        error.message()
    );
    assert!(kelyus.nonces.is_empty());

    let mut sambirano = ca_host("sambirano", &ca, Permissions::ALL);
    sambirano
        .verify_deploy(&identity.envelope(&deploy_message("sambirano")))
        .expect("its own host accepts it");
}

#[test]
fn a_certificate_for_the_fleet_is_accepted_by_each_host() {
    let ca = ed25519_key();
    let identity = certificate_for(&ca, &["deployer"]);
    for name in ["sambirano", "kelyus"] {
        let mut host = ca_host(name, &ca, Permissions::ALL);
        host.verify_deploy(&identity.envelope(&deploy_message(name)))
            .expect("deployer is accepted everywhere");
    }
}

#[test]
fn a_certificate_for_another_principal_is_forbidden() {
    let ca = ed25519_key();
    let identity = certificate_for(&ca, &["root", "deployer@kelyus"]);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "forbidden",
    );
}

#[test]
fn a_certificate_valid_for_any_principal_is_forbidden() {
    let ca = ed25519_key();
    let identity = certificate_for(&ca, &[]);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "forbidden",
    );
}
