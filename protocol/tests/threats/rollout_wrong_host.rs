//! Threat: a rollout to some hosts sent to a host it does not name (a
//! fleet's signed rollout replayed against another machine the same CA
//! trusts).

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity};

#[test]
fn a_host_the_rollout_does_not_name_refuses_it() {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let bytes = identity.rollout(&[deploy_message("sambirano"), deploy_message("kelyus")]);
    let mut other = ca_host("ambodifotatra", &ca, Permissions::ALL);
    let error = assert_code(other.verify_deploy(&bytes), "wrong_host");
    let text = error.message();
    assert!(
        text.contains("sambirano") && text.contains("kelyus"),
        "{text}"
    );
    assert!(other.nonces.is_empty());
}
