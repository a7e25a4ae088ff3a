//! Threat: a rollout captured on its way to one host and sent to it again
//! inside its window: each host's part has its own nonce, so the second
//! copy is replayed there while every other host still takes its part once.

use deployd_protocol::Permissions;

use crate::fixture::assert_code;
use crate::ssh_fixture::{ca_host, deploy_message, ed25519_key, CertificateSpec, SshIdentity};

#[test]
fn the_same_rollout_twice_on_one_host_is_replayed() {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let bytes = identity.rollout(&[deploy_message("sambirano"), deploy_message("kelyus")]);
    let mut sambirano = ca_host("sambirano", &ca, Permissions::ALL);
    sambirano.verify_deploy(&bytes).expect("first time");
    assert_code(sambirano.verify_deploy(&bytes), "replayed");
    assert_eq!(sambirano.nonces.len(), 1);

    let mut kelyus = ca_host("kelyus", &ca, Permissions::ALL);
    kelyus.verify_deploy(&bytes).expect("its own part, once");
    assert_code(kelyus.verify_deploy(&bytes), "replayed");
}
