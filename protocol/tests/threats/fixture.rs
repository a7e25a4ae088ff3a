//! A host named `sambirano` that trusts `ops-1` for everything and `reader-1`
//! for reads only, with a stopped clock and an in-memory nonce store, plus
//! helpers to sign well-formed or deliberately broken payloads.

use std::sync::Arc;

use deployd_protocol::{
    Action, Arrival, DeployId, DeployRequest, Endpoint, Envelope, FixedClock, HostName,
    MemoryNonceStore, Message, Permission, Permissions, RejectError, Request, SecretKey,
    TrustedKey, TrustedKeys, Verified, Verifier, PAYLOAD_TYPE,
};
use serde_json::{json, Value};

/// The verifier's clock reading.
pub const NOW: u64 = 1_800_000_000;
/// A well-formed system path.
pub const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-24.05";

pub struct Fixture {
    /// Trusted for every permission.
    pub ops: SecretKey,
    /// Trusted for reads only.
    pub reader: SecretKey,
    /// Trusted for deploys, not for downgrades.
    pub deployer: SecretKey,
    /// Trusted to downgrade, and nothing else.
    pub downgrader: SecretKey,
    /// Not trusted at all.
    pub stranger: SecretKey,
    pub clock: Arc<FixedClock>,
    pub verifier: Verifier,
    pub nonces: MemoryNonceStore,
}

fn key(name: &str) -> SecretKey {
    SecretKey::generate(name.parse().expect("key name")).expect("random source")
}

impl Fixture {
    pub fn new() -> Fixture {
        let ops = key("ops-1");
        let reader = key("reader-1");
        let deployer = key("ci-1");
        let downgrader = key("downgrade-1");
        let stranger = key("stranger-1");
        let trusted = TrustedKeys::new([
            TrustedKey {
                key: ops.public_key(),
                may: Permissions::ALL,
            },
            TrustedKey {
                key: reader.public_key(),
                may: [Permission::Read].into_iter().collect(),
            },
            TrustedKey {
                key: downgrader.public_key(),
                may: [Permission::Downgrade].into_iter().collect(),
            },
            TrustedKey {
                key: deployer.public_key(),
                may: [Permission::Deploy, Permission::Rollback]
                    .into_iter()
                    .collect(),
            },
        ])
        .expect("distinct names");
        let clock = Arc::new(FixedClock::new(NOW));
        let verifier = Verifier::new(trusted, host(), Box::new(clock.clone()));
        Fixture {
            ops,
            reader,
            deployer,
            downgrader,
            stranger,
            clock,
            verifier,
            nonces: MemoryNonceStore::default(),
        }
    }

    /// Verifies bytes sent to `POST /v1/deploy`, with no active deploy.
    pub fn verify_deploy(&mut self, bytes: &[u8]) -> Result<Verified, RejectError> {
        self.verify_at(bytes, Endpoint::Deploy, None)
    }

    /// Verifies bytes sent to `endpoint`, the active deploy issued at `active`.
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
        let nonces_before = self.nonces.len();
        let result = self.verifier.verify(bytes, &arrival, &mut self.nonces);
        // Every rejection, in every test: nothing changes until a message is
        // fully verified.
        if result.is_err() {
            assert_eq!(
                self.nonces.len(),
                nonces_before,
                "a rejected message was recorded"
            );
        }
        result
    }
}

pub fn host() -> HostName {
    "sambirano".parse().expect("host name")
}

/// A fresh, valid deploy message for `sambirano`, issued now.
pub fn deploy_message() -> Message {
    let request = DeployRequest::new(
        "deploy-1".parse::<DeployId>().expect("id"),
        SYSTEM.parse().expect("store path"),
        Action::Switch,
    )
    .expect("random source");
    Message::new(host(), Request::Deploy(request), NOW, 300)
}

/// The JSON of a valid deploy payload, to break on purpose.
pub fn deploy_json() -> Value {
    json!({
        "kind": "deploy",
        "host": "sambirano",
        "issued_at": NOW,
        "expires_at": NOW + 300,
        "nonce": "00112233445566778899aabbccddeeff",
        "deploy_id": "deploy-1",
        "store_path": SYSTEM,
        "action": "switch",
    })
}

/// Signs arbitrary JSON as a deployd payload.
pub fn sign_json(value: &Value, keys: &[&SecretKey]) -> Vec<u8> {
    sign_bytes(serde_json::to_vec(value).expect("json"), keys)
}

/// Signs arbitrary bytes as a deployd payload.
pub fn sign_bytes(payload: Vec<u8>, keys: &[&SecretKey]) -> Vec<u8> {
    Envelope::sign(PAYLOAD_TYPE, payload, keys).to_json()
}

/// The envelope's JSON as a value, to edit.
pub fn envelope_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("envelope json")
}

/// Asserts `result` is a rejection with the wire code `code`.
#[track_caller]
pub fn assert_code(result: Result<Verified, RejectError>, code: &str) -> RejectError {
    match result {
        Ok(verified) => panic!("accepted, expected {code}: {verified:?}"),
        Err(error) => {
            assert_eq!(error.code().as_str(), code, "{}", error.message());
            error
        }
    }
}
