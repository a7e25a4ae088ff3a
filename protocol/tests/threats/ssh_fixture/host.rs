//! Hosts that trust SSH keys and CAs, and the messages they are sent.

use std::sync::Arc;

use deployd_protocol::ssh::{TrustedSshCa, TrustedSshKey};
use deployd_protocol::{
    Action, Arrival, DeployId, DeployRef, DeployRequest, Endpoint, FixedClock, HostName,
    MemoryNonceStore, Message, Permissions, RejectError, Request, TrustedKeys, Verified, Verifier,
};
use ssh_key::public::KeyData;
use ssh_key::PrivateKey;

use super::keys::{trust_ca, trust_key};
use super::{NOW, SYSTEM};

/// A deployd host trusting SSH keys and CAs, with a stopped clock.
pub struct SshHost {
    /// The host's verifier.
    pub verifier: Verifier,
    /// The nonces it has recorded.
    pub nonces: MemoryNonceStore,
    /// Its clock, shared with the verifier, for a test to move.
    pub clock: Arc<FixedClock>,
}

impl SshHost {
    /// Host `name` at [`NOW`], trusting `keys` and `cas` and nothing else.
    pub fn new(name: &str, keys: Vec<TrustedSshKey>, cas: Vec<TrustedSshCa>) -> SshHost {
        let trusted = TrustedKeys::new([])
            .expect("no Nix key")
            .with_ssh(keys, cas)
            .expect("distinct keys");
        let clock = Arc::new(FixedClock::new(NOW));
        let verifier = Verifier::new(trusted, host(name), Box::new(clock.clone()));
        SshHost {
            verifier,
            nonces: MemoryNonceStore::default(),
            clock,
        }
    }

    /// Verifies bytes sent to `POST /v1/deploy`, with no active deploy.
    pub fn verify_deploy(&mut self, bytes: &[u8]) -> Result<Verified, RejectError> {
        self.verify_at(bytes, Endpoint::Deploy, None)
    }

    /// Verifies bytes sent to `endpoint`, the active deploy issued at
    /// `active`; a rejection must leave the nonce store as it was.
    pub fn verify_at(
        &mut self,
        bytes: &[u8],
        endpoint: Endpoint<'_>,
        active: Option<u64>,
    ) -> Result<Verified, RejectError> {
        let arrival = Arrival {
            endpoint,
            active_issued_at: active,
        };
        let before = self.nonces.len();
        let result = self.verifier.verify(bytes, &arrival, &mut self.nonces);
        if result.is_err() {
            assert_eq!(self.nonces.len(), before, "a rejected message was recorded");
        }
        result
    }
}

/// Host `name` trusting `ca`'s certificates for `deployer` and
/// `deployer@<name>`, as the seed's fleet does.
pub fn ca_host(name: &str, ca: &PrivateKey, may: Permissions) -> SshHost {
    let principals = ["deployer", &format!("deployer@{name}")];
    let trusted = trust_ca(ca.public_key().key_data(), &principals, may);
    SshHost::new(name, vec![], vec![trusted])
}

/// Host `name` trusting one key, with `authorized_keys` options.
pub fn key_host(name: &str, key: &KeyData, options: &str, may: Permissions) -> SshHost {
    SshHost::new(name, vec![trust_key(key, options, may)], vec![])
}

/// A host name.
pub fn host(name: &str) -> HostName {
    name.parse().expect("host name")
}

/// A fresh deploy message for `host`, issued at `now`, valid 5 minutes.
pub fn deploy_message_at(host_name: &str, now: u64) -> Message {
    let request = DeployRequest::new(
        format!("deploy-{host_name}")
            .parse::<DeployId>()
            .expect("id"),
        SYSTEM.parse().expect("store path"),
        Action::Switch,
    )
    .expect("random source");
    Message::new(host(host_name), Request::Deploy(request), now, 300)
}

/// A fresh deploy message for `host`, issued at [`NOW`].
pub fn deploy_message(host_name: &str) -> Message {
    deploy_message_at(host_name, NOW)
}

/// A fresh rollback message for `host`, issued at [`NOW`].
pub fn rollback_message(host_name: &str) -> Message {
    let id = "rollback-1".parse().expect("id");
    let request = Request::Rollback(DeployRef::new(id).expect("random source"));
    Message::new(host(host_name), request, NOW, 60)
}
