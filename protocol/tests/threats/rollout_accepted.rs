//! The rollout baseline: one message signed once (one touch of a security
//! key) carries a deploy for each host; each named host takes exactly its
//! own part, as if it had been sent a single-host message.

use deployd_protocol::{Permissions, Request};

use crate::ssh_fixture::{
    ca_host, deploy_message, ed25519_key, Authenticator, CertificateSpec, SshIdentity,
};

#[test]
fn each_named_host_accepts_its_own_part() {
    let ca = ed25519_key();
    let identity =
        SshIdentity::security(Authenticator::ed25519()).certified(&ca, &CertificateSpec::default());
    let messages = [deploy_message("sambirano"), deploy_message("kelyus")];
    let bytes = identity.rollout(&messages);
    for message in &messages {
        let mut host = ca_host(message.host.as_str(), &ca, Permissions::ALL);
        let verified = host.verify_deploy(&bytes).expect("its part of the rollout");
        assert_eq!(&verified.message, message);
        assert_eq!(verified.key.as_str(), identity.fingerprint());
        assert_eq!(host.nonces.len(), 1);
    }
}

#[test]
fn retry_failed_is_shared_by_every_host_of_a_rollout() {
    let ca = ed25519_key();
    let identity =
        SshIdentity::security(Authenticator::ed25519()).certified(&ca, &CertificateSpec::default());
    let mut messages = [deploy_message("sambirano"), deploy_message("kelyus")];
    for message in &mut messages {
        let Request::Deploy(deploy) = &mut message.request else {
            panic!("not a deploy");
        };
        deploy.retry_failed = true;
    }
    let bytes = identity.rollout(&messages);
    for message in &messages {
        let mut host = ca_host(message.host.as_str(), &ca, Permissions::ALL);
        let verified = host.verify_deploy(&bytes).expect("its part of the rollout");
        let Request::Deploy(deploy) = &verified.message.request else {
            panic!("not a deploy");
        };
        assert!(deploy.retry_failed);
        assert_eq!(&verified.message, message);
    }
    let Request::Deploy(deploy) = &mut messages[1].request else {
        panic!("not a deploy");
    };
    deploy.retry_failed = false;
    assert!(matches!(
        deployd_protocol::rollout_payload(&messages),
        Err(deployd_protocol::RolloutError::NotShared(_))
    ));
}
