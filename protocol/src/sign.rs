//! What a sender needs: build a message with a fresh nonce and a validity
//! window, and sign it into an envelope.

use crate::envelope::{Envelope, PAYLOAD_TYPE};
use crate::keys::SecretKey;
use crate::kinds::Action;
use crate::names::{DeployId, HostName, Nonce};
use crate::payload::{DeployRef, DeployRequest, Message, ReadRequest, Request, MAX_WINDOW_S};
use crate::store_path::StorePath;

/// How long a message stays valid unless the sender says otherwise, in seconds.
pub const DEFAULT_LIFETIME_S: u64 = 5 * 60;

impl DeployRequest {
    /// A `deploy` of `store_path` with a fresh nonce; set the optional fields
    /// on the result.
    pub fn new(
        deploy_id: DeployId,
        store_path: StorePath,
        action: Action,
    ) -> Result<Self, getrandom::Error> {
        Ok(DeployRequest {
            nonce: Nonce::generate()?,
            deploy_id,
            store_path,
            action,
            flake: None,
            rev: None,
            allow_downgrade: false,
            confirm_within_s: None,
            specialisation: None,
            retry_failed: false,
        })
    }
}

impl DeployRef {
    /// A reference to `deploy_id` with a fresh nonce, for `confirm` and `rollback`.
    pub fn new(deploy_id: DeployId) -> Result<Self, getrandom::Error> {
        Ok(DeployRef {
            nonce: Nonce::generate()?,
            deploy_id,
        })
    }
}

impl ReadRequest {
    /// Authorises `method` on `path`.
    pub fn new(method: &str, path: &str) -> Self {
        ReadRequest {
            method: method.to_owned(),
            path: path.to_owned(),
        }
    }
}

impl Message {
    /// A message for `host`, valid from `now` for `lifetime_s` seconds (at
    /// most 15 minutes; longer is cut to that).
    pub fn new(host: HostName, request: Request, now: u64, lifetime_s: u64) -> Message {
        Message {
            host,
            issued_at: now,
            expires_at: now.saturating_add(lifetime_s.clamp(1, MAX_WINDOW_S)),
            request,
        }
    }

    /// Signs the message with each key, into an envelope ready to send.
    pub fn sign(&self, keys: &[&SecretKey]) -> Envelope {
        Envelope::sign(PAYLOAD_TYPE, self.to_payload_bytes(), keys)
    }
}
