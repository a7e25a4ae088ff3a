//! Threat: a host certificate from the fleet CA (every machine holds one,
//! its key readable by root there) used to sign a deploy: only user
//! certificates sign deploy requests.

use deployd_protocol::Permissions;
use ssh_key::certificate::CertType;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity};

#[test]
fn a_host_certificate_is_forbidden() {
    let ca = ed25519_key();
    let spec = CertificateSpec {
        principals: &["deployer", "kelyus"],
        cert_type: CertType::Host,
        ..CertificateSpec::default()
    };
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &spec);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let error = assert_code(
        host.verify_deploy(&identity.envelope(&deploy_message("sambirano"))),
        "forbidden",
    );
    assert!(
        error.message().contains("host certificate"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
}
