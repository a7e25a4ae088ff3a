//! The signed payload: one JSON object per message, for the kinds `deploy`,
//! `confirm`, `rollback` and `read`.
//!
//! Parsing is strict: unknown fields and fields that belong to another kind
//! are rejected, every name checks itself, and the validity window is at most
//! [`MAX_WINDOW_S`] long. The store path of a `deploy` is the one field left
//! unchecked here, because the verifier checks it later in the wire format's order
//! (a malformed store path is `invalid_store_path`, not `bad_request`); that is
//! what the type parameter of [`Message`] is for.

use serde_json::Value;

use crate::kinds::{Action, Kind};
use crate::names::{quote, DeployId, HostName, Nonce, Revision};
use crate::rollout::RolloutEntry;
use crate::store_path::{StorePath, StorePathError};

/// The longest validity window a message may have, in seconds.
pub const MAX_WINDOW_S: u64 = 15 * 60;
/// The longest magic-rollback window a deploy may ask for, in seconds.
pub const MAX_CONFIRM_WITHIN_S: u64 = 60 * 60;
/// The longest `flake` reference accepted, in bytes.
const MAX_FLAKE_BYTES: usize = 1024;
/// The longest `path` of a `read`, in bytes.
const MAX_READ_PATH_BYTES: usize = 2048;

/// Why a payload is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The payload type is not deployd's.
    #[error("payload type \"{found}\" is not {expected}", expected = crate::PAYLOAD_TYPE)]
    PayloadType {
        /// The type received, shortened.
        found: String,
    },
    /// The payload is not UTF-8.
    #[error("the payload is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The JSON is malformed, has unknown fields or a malformed value.
    #[error("invalid JSON payload")]
    Json(#[source] serde_json::Error),
    /// A field this kind needs is missing.
    #[error("a {kind} message needs the field {field}")]
    Missing {
        /// The message's kind.
        kind: Kind,
        /// The missing field.
        field: &'static str,
    },
    /// A field of another kind is present.
    #[error("a {kind} message may not have the field {field}")]
    Foreign {
        /// The message's kind.
        kind: Kind,
        /// The field that does not belong.
        field: &'static str,
    },
    /// A field's value is out of its bounds.
    #[error("field {field}: {reason}")]
    Value {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The window ends before it begins, or is too long.
    #[error(
        "the validity window from {issued_at} to {expires_at} must be 1 to {longest} seconds long"
    )]
    Window {
        /// Its start.
        issued_at: u64,
        /// Its end.
        expires_at: u64,
        /// The longest window this kind of message may have.
        longest: u64,
    },
}

/// A message, as signed. `P` is the store path's type: [`StorePath`] once
/// checked, `String` in between parsing and the verifier's store-path check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<P = StorePath> {
    /// The one host this message is for.
    pub host: HostName,
    /// Start of the validity window, Unix seconds.
    pub issued_at: u64,
    /// End of the validity window, Unix seconds.
    pub expires_at: u64,
    /// What the message asks for.
    pub request: Request<P>,
}

/// The kind-specific part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<P = StorePath> {
    /// Deploy a system.
    Deploy(DeployRequest<P>),
    /// Confirm the deploy it names.
    Confirm(DeployRef),
    /// Start a deploy, with the id it names, back to the previous generation.
    Rollback(DeployRef),
    /// Authorise one read request.
    Read(ReadRequest),
}

/// A `deploy` message's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest<P = StorePath> {
    /// Single use.
    pub nonce: Nonce,
    /// The deploy's id, chosen by the sender.
    pub deploy_id: DeployId,
    /// The system to activate.
    pub store_path: P,
    /// How to activate it.
    pub action: Action,
    /// The flake it was built from, for the record.
    pub flake: Option<String>,
    /// The git revision it was built from.
    pub rev: Option<Revision>,
    /// Whether the sender means to go back to an older request.
    pub allow_downgrade: bool,
    /// Magic rollback: roll back unless confirmed within this many seconds.
    pub confirm_within_s: Option<u64>,
    /// Activate the system's specialisation of this name (its
    /// `specialisation/NAME`), as `nixos-rebuild --specialisation` does.
    pub specialisation: Option<String>,
    /// Deploy even if this store path failed or rolled back on the host
    /// within its quarantine window (`push --retry-failed`).
    pub retry_failed: bool,
}

/// A single-use reference to a deploy: the one a `confirm` confirms, or the
/// new one a `rollback` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRef {
    /// Single use.
    pub nonce: Nonce,
    /// The deploy.
    pub deploy_id: DeployId,
}

/// A `read` message's fields: the one request it authorises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// HTTP method, such as `GET`.
    pub method: String,
    /// Request path, such as `/v1/status`.
    pub path: String,
}

/// Every field of every kind, as JSON. Converting to [`Message`] checks which
/// fields the kind needs and which it may not have.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WirePayload {
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    kind: Option<Kind>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    host: Option<HostName>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    issued_at: Option<u64>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<u64>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    nonce: Option<Nonce>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    deploy_id: Option<DeployId>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    store_path: Option<String>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    action: Option<Action>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    flake: Option<String>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    rev: Option<Revision>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    allow_downgrade: Option<bool>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    confirm_within_s: Option<u64>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    specialisation: Option<String>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    retry_failed: Option<bool>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    method: Option<String>,
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    path: Option<String>,
}

/// A field that is present must have a value: `null` is not "absent".
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Takes a field the kind needs.
fn required<T>(kind: Kind, field: &'static str, value: Option<T>) -> Result<T, PayloadError> {
    value.ok_or(PayloadError::Missing { kind, field })
}

impl WirePayload {
    /// Every kind-specific field and whether it is present.
    fn kind_fields(&self) -> [(&'static str, bool); 12] {
        [
            ("nonce", self.nonce.is_some()),
            ("deploy_id", self.deploy_id.is_some()),
            ("store_path", self.store_path.is_some()),
            ("action", self.action.is_some()),
            ("flake", self.flake.is_some()),
            ("rev", self.rev.is_some()),
            ("allow_downgrade", self.allow_downgrade.is_some()),
            ("confirm_within_s", self.confirm_within_s.is_some()),
            ("specialisation", self.specialisation.is_some()),
            ("retry_failed", self.retry_failed.is_some()),
            ("method", self.method.is_some()),
            ("path", self.path.is_some()),
        ]
    }

    /// Fails when any field outside `allowed` is present.
    fn only(&self, kind: Kind, allowed: &[&str]) -> Result<(), PayloadError> {
        match self
            .kind_fields()
            .iter()
            .find(|(field, is_present)| *is_present && !allowed.contains(field))
        {
            Some((field, _)) => Err(PayloadError::Foreign { kind, field }),
            None => Ok(()),
        }
    }

    fn into_request(self, kind: Kind) -> Result<Request<String>, PayloadError> {
        match kind {
            Kind::Deploy => {
                self.only(kind, &DEPLOY_FIELDS)?;
                Ok(Request::Deploy(DeployRequest {
                    nonce: required(kind, "nonce", self.nonce)?,
                    deploy_id: required(kind, "deploy_id", self.deploy_id)?,
                    store_path: required(kind, "store_path", self.store_path)?,
                    action: required(kind, "action", self.action)?,
                    flake: self.flake.map(check_flake).transpose()?,
                    rev: self.rev,
                    allow_downgrade: self.allow_downgrade.unwrap_or(false),
                    confirm_within_s: self
                        .confirm_within_s
                        .map(check_confirm_within)
                        .transpose()?,
                    specialisation: self.specialisation.map(check_specialisation).transpose()?,
                    retry_failed: self.retry_failed.unwrap_or(false),
                }))
            }
            Kind::Confirm | Kind::Rollback => {
                self.only(kind, &["nonce", "deploy_id"])?;
                let reference = DeployRef {
                    nonce: required(kind, "nonce", self.nonce)?,
                    deploy_id: required(kind, "deploy_id", self.deploy_id)?,
                };
                Ok(match kind {
                    Kind::Confirm => Request::Confirm(reference),
                    _ => Request::Rollback(reference),
                })
            }
            Kind::Read => {
                self.only(kind, &["method", "path"])?;
                Ok(Request::Read(ReadRequest {
                    method: check_method(required(kind, "method", self.method)?)?,
                    path: check_read_path(required(kind, "path", self.path)?)?,
                }))
            }
        }
    }
}

const DEPLOY_FIELDS: [&str; 10] = [
    "nonce",
    "deploy_id",
    "store_path",
    "action",
    "flake",
    "rev",
    "allow_downgrade",
    "confirm_within_s",
    "specialisation",
    "retry_failed",
];

fn check_flake(flake: String) -> Result<String, PayloadError> {
    if flake.is_empty() || flake.len() > MAX_FLAKE_BYTES || flake.chars().any(char::is_control) {
        return Err(PayloadError::Value {
            field: "flake",
            reason: "must be 1 to 1024 bytes without control characters",
        });
    }
    Ok(flake)
}

/// A specialisation's name names a link inside the system: a single path
/// component of letters, digits, `_`, `-` and `.`, not starting with a dot.
fn check_specialisation(name: String) -> Result<String, PayloadError> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !fits {
        return Err(PayloadError::Value {
            field: "specialisation",
            reason: "must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'",
        });
    }
    Ok(name)
}

fn check_confirm_within(seconds: u64) -> Result<u64, PayloadError> {
    if seconds == 0 || seconds > MAX_CONFIRM_WITHIN_S {
        return Err(PayloadError::Value {
            field: "confirm_within_s",
            reason: "must be 1 to 3600 seconds",
        });
    }
    Ok(seconds)
}

fn check_method(method: String) -> Result<String, PayloadError> {
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(PayloadError::Value {
            field: "method",
            reason: "must be an HTTP method in capital letters",
        });
    }
    Ok(method)
}

fn check_read_path(path: String) -> Result<String, PayloadError> {
    if !path.starts_with('/')
        || path.len() > MAX_READ_PATH_BYTES
        || !path.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(PayloadError::Value {
            field: "path",
            reason: "must start with '/' and hold at most 2048 visible ASCII characters",
        });
    }
    Ok(path)
}

/// Whom a verified payload addresses.
pub(crate) enum Addressed {
    /// This host: its message.
    Message(Message<String>),
    /// A rollout that does not name this host: the hosts it names.
    OtherHosts(String),
}

/// Parses payload bytes (already verified) of the given payload type, for
/// `host`: a single-host message, or this host's part of a rollout.
pub(crate) fn parse_payload(
    payload_type: &str,
    bytes: &[u8],
    host: &HostName,
) -> Result<Addressed, PayloadError> {
    let text = std::str::from_utf8(bytes).map_err(PayloadError::NotUtf8)?;
    let wire: WirePayload = match payload_type {
        crate::PAYLOAD_TYPE => serde_json::from_str(text).map_err(PayloadError::Json)?,
        crate::ROLLOUT_PAYLOAD_TYPE => match crate::rollout::entry_for(text, host)? {
            RolloutEntry::Mine(fields) => WirePayload::from_fields(fields)?,
            RolloutEntry::NotMine(hosts) => return Ok(Addressed::OtherHosts(hosts)),
        },
        _ => {
            return Err(PayloadError::PayloadType {
                found: quote(payload_type),
            })
        }
    };
    wire.into_message(MAX_WINDOW_S).map(Addressed::Message)
}

impl WirePayload {
    /// Parses `value` (an object of payload fields) as a payload.
    pub(crate) fn from_fields(value: serde_json::Map<String, Value>) -> Result<Self, PayloadError> {
        serde_json::from_value(Value::Object(value)).map_err(PayloadError::Json)
    }

    /// The message, whose window may be at most `longest_window_s` long.
    pub(crate) fn into_message(
        self,
        longest_window_s: u64,
    ) -> Result<Message<String>, PayloadError> {
        let kind = self.kind.ok_or(PayloadError::Value {
            field: "kind",
            reason: "missing",
        })?;
        let host = required(kind, "host", self.host.clone())?;
        let issued_at = required(kind, "issued_at", self.issued_at)?;
        let expires_at = required(kind, "expires_at", self.expires_at)?;
        if expires_at <= issued_at || expires_at - issued_at > longest_window_s {
            return Err(PayloadError::Window {
                issued_at,
                expires_at,
                longest: longest_window_s,
            });
        }
        Ok(Message {
            host,
            issued_at,
            expires_at,
            request: self.into_request(kind)?,
        })
    }
}

impl<P> Request<P> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Deploy(_) => Kind::Deploy,
            Request::Confirm(_) => Kind::Confirm,
            Request::Rollback(_) => Kind::Rollback,
            Request::Read(_) => Kind::Read,
        }
    }

    /// The nonce, for every kind but `read`.
    pub fn nonce(&self) -> Option<&Nonce> {
        match self {
            Request::Deploy(deploy) => Some(&deploy.nonce),
            Request::Confirm(reference) | Request::Rollback(reference) => Some(&reference.nonce),
            Request::Read(_) => None,
        }
    }
}

impl Message<String> {
    /// Checks the store path of a `deploy`, the last field left unchecked.
    pub(crate) fn check_store_path(self) -> Result<Message, StorePathError> {
        let request = match self.request {
            Request::Deploy(deploy) => Request::Deploy(DeployRequest {
                store_path: deploy.store_path.parse()?,
                nonce: deploy.nonce,
                deploy_id: deploy.deploy_id,
                action: deploy.action,
                flake: deploy.flake,
                rev: deploy.rev,
                allow_downgrade: deploy.allow_downgrade,
                confirm_within_s: deploy.confirm_within_s,
                specialisation: deploy.specialisation,
                retry_failed: deploy.retry_failed,
            }),
            Request::Confirm(reference) => Request::Confirm(reference),
            Request::Rollback(reference) => Request::Rollback(reference),
            Request::Read(read) => Request::Read(read),
        };
        Ok(Message {
            host: self.host,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            request,
        })
    }
}

impl Message {
    /// The payload bytes to sign: compact JSON with the fields of its kind.
    pub fn to_payload_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_wire())
            .unwrap_or_else(|_| unreachable!("plain fields always serialize"))
    }

    /// The payload as a JSON object, for a rollout to gather.
    pub(crate) fn to_json_object(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self.to_wire()) {
            Ok(Value::Object(object)) => object,
            _ => unreachable!("a struct serializes to an object"),
        }
    }

    fn to_wire(&self) -> WirePayload {
        let mut wire = WirePayload {
            kind: Some(self.request.kind()),
            host: Some(self.host.clone()),
            issued_at: Some(self.issued_at),
            expires_at: Some(self.expires_at),
            ..WirePayload::default()
        };
        match &self.request {
            Request::Deploy(deploy) => {
                wire.nonce = Some(deploy.nonce.clone());
                wire.deploy_id = Some(deploy.deploy_id.clone());
                wire.store_path = Some(deploy.store_path.to_string());
                wire.action = Some(deploy.action);
                wire.flake = deploy.flake.clone();
                wire.rev = deploy.rev.clone();
                wire.allow_downgrade = deploy.allow_downgrade.then_some(true);
                wire.confirm_within_s = deploy.confirm_within_s;
                wire.specialisation = deploy.specialisation.clone();
                wire.retry_failed = deploy.retry_failed.then_some(true);
            }
            Request::Confirm(reference) | Request::Rollback(reference) => {
                wire.nonce = Some(reference.nonce.clone());
                wire.deploy_id = Some(reference.deploy_id.clone());
            }
            Request::Read(read) => {
                wire.method = Some(read.method.clone());
                wire.path = Some(read.path.clone());
            }
        }
        wire
    }
}

#[cfg(test)]
mod tests;
