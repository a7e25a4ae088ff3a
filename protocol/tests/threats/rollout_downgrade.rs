//! Threat: an old rollout, validly signed, sent to a host that has since
//! moved on: its `issued_at` is older than the active deploy's, so it is a
//! downgrade like any single-host deploy.

use deployd_protocol::{Endpoint, Permissions};

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity, NOW};

#[test]
fn a_rollout_older_than_the_active_deploy_is_a_downgrade() {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let bytes = identity.rollout(&[deploy_message("sambirano"), deploy_message("kelyus")]);
    let mut host = ca_host("sambirano", &ca, Permissions::ALL);
    let error = assert_code(
        host.verify_at(&bytes, Endpoint::Deploy, Some(NOW + 1)),
        "downgrade",
    );
    assert!(
        error.message().contains("allow_downgrade"),
        "{}",
        error.message()
    );
    assert!(host.nonces.is_empty());
    host.verify_at(&bytes, Endpoint::Deploy, Some(NOW))
        .expect("as new as the active deploy");
}
