//! The stable error codes of the API and the reasons a signed message is
//! rejected, each mapped to exactly one code.

use std::fmt;

use crate::kinds::{Kind, Permission};
use crate::names::{at_most, HostName, KeyName, Nonce};
use crate::payload::PayloadError;
use crate::store_path::StorePathError;

/// The error codes the book fixes (docs/src/reference/error-codes.md); the `error` field of every error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request.
    BadRequest,
    /// No trusted signature verifies.
    BadSignature,
    /// No signature is by a trusted key.
    UnknownKey,
    /// The key may not sign this kind, or the message is for another endpoint.
    Forbidden,
    /// The message is for another host.
    WrongHost,
    /// The validity window has passed.
    Expired,
    /// The validity window has not begun.
    NotYetValid,
    /// The nonce or deploy id was used before.
    Replayed,
    /// Older than the active deploy, without permission to go back.
    Downgrade,
    /// A deploy is already running.
    Busy,
    /// The store path failed or rolled back on this host within its
    /// quarantine window, and the request does not say `retry_failed`.
    Quarantined,
    /// No such deploy.
    NotFound,
    /// The request body is too large.
    PayloadTooLarge,
    /// The store path is malformed.
    InvalidStorePath,
    /// Something failed on the host; details only in its log.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::WrongHost => "wrong_host",
            ErrorCode::Expired => "expired",
            ErrorCode::NotYetValid => "not_yet_valid",
            ErrorCode::Replayed => "replayed",
            ErrorCode::Downgrade => "downgrade",
            ErrorCode::Busy => "busy",
            ErrorCode::Quarantined => "quarantined",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidStorePath => "invalid_store_path",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the book pairs with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::BadSignature | ErrorCode::UnknownKey => 401,
            ErrorCode::Forbidden
            | ErrorCode::WrongHost
            | ErrorCode::Expired
            | ErrorCode::NotYetValid => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Replayed
            | ErrorCode::Downgrade
            | ErrorCode::Busy
            | ErrorCode::Quarantined => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::InvalidStorePath => 422,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error answer: `{"error": CODE, "message": SENTENCE}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The stable code.
    pub error: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

/// The longest [`RejectError::message`], in characters.
pub const MAX_MESSAGE_CHARS: usize = 400;

/// Why a signed message was rejected. Each variant has one stable code.
#[derive(Debug, thiserror::Error)]
pub enum RejectError {
    /// The input is larger than any valid envelope.
    #[error("the envelope is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The envelope is not UTF-8 JSON of the DSSE shape.
    #[error("malformed envelope")]
    MalformedEnvelope(#[source] crate::envelope::EnvelopeError),
    /// No signature is by a trusted key.
    #[error("no signature is by a trusted key (key ids: {keyids})")]
    UnknownKey {
        /// The key ids the envelope named, shortened.
        keyids: String,
    },
    /// Signatures by trusted keys are there but none verifies.
    #[error("the signature by {key} does not verify")]
    BadSignature {
        /// The first trusted key that was tried.
        key: KeyName,
    },
    /// An SSH signature by a trusted key (or for a trusted CA) cannot be read.
    #[error("the SSH signature by {key} is malformed")]
    SshSignature {
        /// The keyid it names.
        key: KeyName,
        /// What is wrong with it.
        #[source]
        source: crate::ssh::SshsigError,
    },
    /// An SSH signature verified, and its key's rules refuse it (no touch of
    /// a security key, no user verification where it is required).
    #[error("the signature by {key} is refused: {why}")]
    SshKeyRefused {
        /// The SSH key.
        key: KeyName,
        /// Which rule.
        why: &'static str,
    },
    /// An SSH signature verified with a certificate from a trusted CA, and
    /// the certificate does not authorise it.
    #[error("the certificate of {key} is refused")]
    Certificate {
        /// The certified key.
        key: KeyName,
        /// Why.
        #[source]
        refusal: crate::ssh::CertificateRefusal,
    },
    /// The verified payload is not a valid message.
    #[error("malformed payload")]
    MalformedPayload(#[source] PayloadError),
    /// The message is of another kind than the endpoint takes.
    #[error("a {found} message was sent where a {expected} message is required")]
    WrongKind {
        /// What the endpoint takes.
        expected: Kind,
        /// What was signed.
        found: Kind,
    },
    /// The message does not authorise this exact request (another deploy id,
    /// another read path).
    #[error("the message authorises {authorised}, not {requested}")]
    WrongTarget {
        /// What the message names.
        authorised: String,
        /// What was requested.
        requested: String,
    },
    /// No key that signed may do this.
    #[error("key {key} may not {permission:?}")]
    NotPermitted {
        /// The key whose signature verified.
        key: KeyName,
        /// The permission it lacks.
        permission: Permission,
    },
    /// The message names another host.
    #[error("the message is for {found}, this is {expected}")]
    WrongHost {
        /// This host.
        expected: HostName,
        /// The host or hosts the message names.
        found: String,
    },
    /// Now is after the window (plus skew).
    #[error("the message expired at {expires_at}, it is now {now}")]
    Expired {
        /// End of the window.
        expires_at: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// Now is before the window (minus skew).
    #[error("the message is valid from {issued_at}, it is now {now}")]
    NotYetValid {
        /// Start of the window.
        issued_at: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The nonce was seen before.
    #[error("nonce {nonce} was already used")]
    Replayed {
        /// The reused nonce.
        nonce: Nonce,
    },
    /// A desired state no newer than the last one applied from its channel.
    #[error("desired state {sequence} is not above {last}, the last applied from this channel")]
    OldSequence {
        /// The state's sequence.
        sequence: u64,
        /// The last sequence applied from the channel.
        last: u64,
    },
    /// The store path is malformed.
    #[error(transparent)]
    InvalidStorePath(StorePathError),
    /// Older than the active deploy, and no permission to go back.
    #[error("the request was issued at {issued_at}, before the active deploy's {active_issued_at}; {why}")]
    Downgrade {
        /// The request's `issued_at`.
        issued_at: u64,
        /// The active deploy's `issued_at`.
        active_issued_at: u64,
        /// What is missing: the flag or the key's permission.
        why: &'static str,
    },
    /// The store of seen nonces failed.
    #[error("the nonce store failed")]
    NonceStore(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RejectError {
    /// The stable code for this rejection.
    pub fn code(&self) -> ErrorCode {
        match self {
            RejectError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            RejectError::MalformedEnvelope(_) | RejectError::MalformedPayload(_) => {
                ErrorCode::BadRequest
            }
            RejectError::UnknownKey { .. } => ErrorCode::UnknownKey,
            RejectError::BadSignature { .. } | RejectError::SshSignature { .. } => {
                ErrorCode::BadSignature
            }
            RejectError::SshKeyRefused { .. } => ErrorCode::Forbidden,
            RejectError::Certificate { refusal, .. } => refusal.code(),
            RejectError::WrongKind { .. }
            | RejectError::WrongTarget { .. }
            | RejectError::NotPermitted { .. } => ErrorCode::Forbidden,
            RejectError::WrongHost { .. } => ErrorCode::WrongHost,
            RejectError::Expired { .. } => ErrorCode::Expired,
            RejectError::NotYetValid { .. } => ErrorCode::NotYetValid,
            RejectError::Replayed { .. } | RejectError::OldSequence { .. } => ErrorCode::Replayed,
            RejectError::InvalidStorePath(_) => ErrorCode::InvalidStorePath,
            RejectError::Downgrade { .. } => ErrorCode::Downgrade,
            RejectError::NonceStore(_) => ErrorCode::Internal,
        }
    }

    /// The error and its causes as one sentence, for an error body's
    /// `message` and for the log: control characters escaped and at most
    /// [`MAX_MESSAGE_CHARS`] long, since parts of it may come from the
    /// request. An `internal` error says nothing of its cause (log it with
    /// `{:#}` or through [`std::error::Error::source`] instead).
    pub fn message(&self) -> String {
        if self.code() == ErrorCode::Internal {
            return "the host failed to handle the request; its log has the details".to_owned();
        }
        let mut parts = vec![self.to_string()];
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            parts.push(error.to_string());
            cause = error.source();
        }
        let mut escaped = String::new();
        for c in parts.join(": ").chars() {
            if c.is_control() {
                escaped.extend(c.escape_debug());
            } else {
                escaped.push(c);
            }
        }
        at_most(escaped.chars(), MAX_MESSAGE_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_wire_name_and_status() {
        let table = [
            (ErrorCode::BadRequest, "bad_request", 400),
            (ErrorCode::BadSignature, "bad_signature", 401),
            (ErrorCode::UnknownKey, "unknown_key", 401),
            (ErrorCode::Forbidden, "forbidden", 403),
            (ErrorCode::WrongHost, "wrong_host", 403),
            (ErrorCode::Expired, "expired", 403),
            (ErrorCode::NotYetValid, "not_yet_valid", 403),
            (ErrorCode::Replayed, "replayed", 409),
            (ErrorCode::Downgrade, "downgrade", 409),
            (ErrorCode::Busy, "busy", 409),
            (ErrorCode::Quarantined, "quarantined", 409),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::PayloadTooLarge, "payload_too_large", 413),
            (ErrorCode::InvalidStorePath, "invalid_store_path", 422),
            (ErrorCode::Internal, "internal", 500),
        ];
        for (code, name, status) in table {
            assert_eq!(code.as_str(), name);
            assert_eq!(
                serde_json::to_string(&code).expect("json"),
                format!("\"{name}\"")
            );
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&format!("\"{name}\"")).expect("parse"),
                code
            );
            assert_eq!(code.http_status(), status, "{name}");
        }
    }

    #[test]
    fn messages_escape_control_characters_and_are_bounded() {
        let error = RejectError::UnknownKey {
            keyids: "x".repeat(1000) + "\n\u{1b}[31m",
        };
        let message = error.message();
        assert!(!message.chars().any(char::is_control), "{message}");
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn internal_errors_tell_the_client_nothing_of_their_cause() {
        let cause = std::io::Error::other("/var/lib/deployd/nonces: disk full");
        let error = RejectError::NonceStore(Box::new(cause));
        assert_eq!(error.code(), ErrorCode::Internal);
        assert!(
            !error.message().contains("disk full"),
            "{}",
            error.message()
        );
    }
}
