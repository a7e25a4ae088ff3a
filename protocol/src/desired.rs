//! A desired state: what a host that pulls its orders from a channel should
//! run (docs/src/design/channels.md).
//!
//! A channel holds, per host, the newest signed desired state. Its payload
//! type is [`DESIRED_PAYLOAD_TYPE`]; its payload is a `deploy` message's
//! fields plus a `sequence`, increasing per channel:
//!
//! ```json
//! {"kind": "deploy", "host": "sambirano", "issued_at": 1800000000,
//!  "expires_at": 1802592000, "nonce": "...", "deploy_id": "...",
//!  "store_path": "/nix/store/...", "action": "switch", "sequence": 7}
//! ```
//!
//! It lives on the channel for days, not minutes, so its window may be as
//! long as the host's `max_desired_age_s` (at most [`LONGEST_DESIRED_AGE_S`]).
//! A host verifies it as it verifies a deploy (the same checks in the same
//! order, [`crate::Verifier::verify_desired`]), and also that its sequence is
//! above the last it applied from that channel: an older state served later,
//! or the same state served again, changes nothing. A desired state cannot
//! ask for a confirm (`confirm_within_s`): nobody reaches a pulling host to
//! send one.

use serde_json::Value;

use crate::envelope::Envelope;
use crate::keys::SecretKey;
use crate::names::HostName;
use crate::payload::{DeployRequest, Message, PayloadError, Request, WirePayload};

/// The payload type of a desired state.
pub const DESIRED_PAYLOAD_TYPE: &str = "application/vnd.deployd.desired.v1+json";
/// How long a desired state may be valid unless the host says otherwise
/// (`max_desired_age_s`): 30 days.
pub const DEFAULT_MAX_DESIRED_AGE_S: u64 = 30 * 24 * 60 * 60;
/// The longest validity any host accepts for a desired state: 366 days.
pub const LONGEST_DESIRED_AGE_S: u64 = 366 * 24 * 60 * 60;

/// A desired state, as signed: a deploy message and its place in the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState<P = crate::StorePath> {
    /// Increasing per channel; a host applies only a state above the last
    /// it applied from that channel.
    pub sequence: u64,
    /// The deploy, whose window is the state's validity.
    pub message: Message<P>,
}

impl DesiredState {
    /// The desired state `sequence` for `host`: deploy `deploy`, valid from
    /// `now` for `lifetime_s` seconds (1 to [`LONGEST_DESIRED_AGE_S`]; cut to
    /// that). A `confirm_within_s` in `deploy` is dropped: nobody confirms a
    /// pulling host.
    pub fn new(
        host: HostName,
        mut deploy: DeployRequest,
        sequence: u64,
        now: u64,
        lifetime_s: u64,
    ) -> DesiredState {
        deploy.confirm_within_s = None;
        DesiredState {
            sequence,
            message: Message {
                host,
                issued_at: now,
                expires_at: now.saturating_add(lifetime_s.clamp(1, LONGEST_DESIRED_AGE_S)),
                request: Request::Deploy(deploy),
            },
        }
    }

    /// The payload bytes to sign.
    pub fn to_payload_bytes(&self) -> Vec<u8> {
        let mut fields = self.message.to_json_object();
        fields.insert("sequence".to_owned(), Value::from(self.sequence));
        serde_json::to_vec(&fields).unwrap_or_else(|_| unreachable!("JSON values serialize"))
    }

    /// Signs the state with each key, into an envelope for a channel.
    pub fn sign(&self, keys: &[&SecretKey]) -> Envelope {
        Envelope::sign(DESIRED_PAYLOAD_TYPE, self.to_payload_bytes(), keys)
    }
}

/// Parses a desired state's payload (already verified), whose window may be
/// at most `max_age_s` long. The store path is checked later, in the
/// verifier's order.
pub(crate) fn parse_desired(
    bytes: &[u8],
    max_age_s: u64,
) -> Result<DesiredState<String>, PayloadError> {
    let text = std::str::from_utf8(bytes).map_err(PayloadError::NotUtf8)?;
    let mut fields = crate::rollout::parse_object(text).map_err(PayloadError::Json)?;
    let sequence = match fields.remove("sequence") {
        Some(Value::Number(number)) => number.as_u64().filter(|n| *n > 0),
        Some(_) => None,
        None => {
            return Err(PayloadError::Value {
                field: "sequence",
                reason: "a desired state needs a sequence",
            })
        }
    }
    .ok_or(PayloadError::Value {
        field: "sequence",
        reason: "must be a whole number from 1",
    })?;
    let message = WirePayload::from_fields(fields)?.into_message(max_age_s)?;
    match &message.request {
        Request::Deploy(deploy) if deploy.confirm_within_s.is_some() => Err(PayloadError::Value {
            field: "confirm_within_s",
            reason: "a desired state cannot wait for a confirm",
        }),
        Request::Deploy(_) => Ok(DesiredState { sequence, message }),
        other => Err(PayloadError::Value {
            field: "kind",
            reason: match other.kind() {
                crate::Kind::Confirm => "a desired state is a deploy, not a confirm",
                crate::Kind::Rollback => "a desired state is a deploy, not a rollback",
                _ => "a desired state is a deploy, not a read",
            },
        }),
    }
}
