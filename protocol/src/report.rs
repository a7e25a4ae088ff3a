//! A host's report: a pulling host tells push serve how its deploy went,
//! outbound, signed with its own host key (docs/src/design/channels.md).
//!
//! The host key is an Ed25519 key in Nix's format that the host makes at its
//! first start; its public half is in the host's `/v1/status` and, pinned by
//! the operator, in push.toml as the host's `host_key`. A report is a DSSE
//! envelope of payload type [`REPORT_PAYLOAD_TYPE`] whose payload is a
//! [`HostReport`]: the host, when it was sent, the desired state's sequence
//! it answers, and the deploy's record. The receiver checks the signature
//! by the pinned key over the exact bytes before it parses them, then the
//! host's name (in the report and in its record) and the time it was sent.

use crate::api::DeployRecord;
use crate::envelope::{Envelope, EnvelopeError, SignatureValue, MAX_ENVELOPE_BYTES};
use crate::error::ErrorCode;
use crate::keys::{PublicKey, SecretKey};
use crate::names::{quote, HostName};
use crate::payload::MAX_WINDOW_S;

/// The payload type of a host's report.
pub const REPORT_PAYLOAD_TYPE: &str = "application/vnd.deployd.report.v1+json";

/// What a host reports of one deploy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    /// The host that sends it.
    pub host: HostName,
    /// When it was sent (Unix seconds); a receiver keeps the newest.
    pub sent_at: u64,
    /// The desired state's sequence the deploy came from, if it came from
    /// a channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The deploy's record as the host has it.
    pub record: DeployRecord,
}

/// Why a report is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Larger than any envelope.
    #[error("the report is {0} bytes, more than the {MAX_ENVELOPE_BYTES} allowed")]
    TooLarge(usize),
    /// Not a DSSE envelope.
    #[error("malformed envelope")]
    Envelope(#[source] EnvelopeError),
    /// No signature by the host's pinned key.
    #[error("no signature by {host}'s host key {key} (key ids: {keyids})")]
    NotByHostKey {
        /// The host.
        host: HostName,
        /// Its pinned key's name.
        key: String,
        /// The key ids the envelope names, shortened.
        keyids: String,
    },
    /// The host key's signature does not verify.
    #[error("the signature by {host}'s host key does not verify")]
    BadSignature {
        /// The host.
        host: HostName,
    },
    /// The payload is not a report.
    #[error("the payload is not a report")]
    Payload(#[source] serde_json::Error),
    /// Another payload type.
    #[error("payload type {0} is not {REPORT_PAYLOAD_TYPE}")]
    PayloadType(String),
    /// The report, or its record, names another host.
    #[error("the report names {found}, it was sent for {expected}")]
    WrongHost {
        /// The host it was sent for.
        expected: HostName,
        /// The host it names.
        found: String,
    },
    /// Sent too long ago, or in the future, beyond the clock skew allowed.
    #[error("the report was sent at {sent_at}, it is now {now}")]
    OutOfTime {
        /// When it says it was sent.
        sent_at: u64,
        /// The receiver's clock.
        now: u64,
    },
}

impl ReportError {
    /// The stable code for the refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReportError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ReportError::Envelope(_) | ReportError::Payload(_) | ReportError::PayloadType(_) => {
                ErrorCode::BadRequest
            }
            ReportError::NotByHostKey { .. } => ErrorCode::UnknownKey,
            ReportError::BadSignature { .. } => ErrorCode::BadSignature,
            ReportError::WrongHost { .. } => ErrorCode::WrongHost,
            ReportError::OutOfTime { sent_at, now } if sent_at > now => ErrorCode::NotYetValid,
            ReportError::OutOfTime { .. } => ErrorCode::Expired,
        }
    }
}

impl HostReport {
    /// Signs the report with the host key.
    pub fn sign(&self, host_key: &SecretKey) -> Envelope {
        let payload =
            serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("a report serializes"));
        Envelope::sign(REPORT_PAYLOAD_TYPE, payload, &[host_key])
    }

    /// Verifies `bytes` as a report from `host`, whose pinned host key is
    /// `host_key`, received at `now`: signature over the exact bytes first,
    /// then the payload, the host's name and the time it was sent (within
    /// 15 minutes and the clock skew allowed).
    pub fn verify(
        bytes: &[u8],
        host: &HostName,
        host_key: &PublicKey,
        now: u64,
    ) -> Result<HostReport, ReportError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(ReportError::TooLarge(bytes.len()));
        }
        let envelope = Envelope::parse(bytes).map_err(ReportError::Envelope)?;
        let key_name = host_key.name().as_str();
        let Some(signature) = envelope
            .signatures()
            .iter()
            .find(|signature| signature.keyid == key_name)
        else {
            let keyids: Vec<&str> = envelope
                .signatures()
                .iter()
                .map(|signature| signature.keyid.as_str())
                .collect();
            return Err(ReportError::NotByHostKey {
                host: host.clone(),
                key: key_name.to_owned(),
                keyids: quote(&keyids.join(", ")),
            });
        };
        let verifies = match &signature.sig {
            SignatureValue::Ed25519(sig) => host_key
                .verifying_key()
                .verify_strict(&envelope.pre_authentication_encoding(), sig)
                .is_ok(),
            SignatureValue::Sshsig(_) => false,
        };
        if !verifies {
            return Err(ReportError::BadSignature { host: host.clone() });
        }
        if envelope.payload_type() != REPORT_PAYLOAD_TYPE {
            return Err(ReportError::PayloadType(quote(envelope.payload_type())));
        }
        let report: HostReport =
            serde_json::from_slice(envelope.payload()).map_err(ReportError::Payload)?;
        for named in [&report.host, &report.record.host] {
            if named != host {
                return Err(ReportError::WrongHost {
                    expected: host.clone(),
                    found: format!("host {named}"),
                });
            }
        }
        let skew = crate::CLOCK_SKEW_S;
        if report.sent_at > now.saturating_add(skew)
            || now > report.sent_at.saturating_add(MAX_WINDOW_S + skew)
        {
            return Err(ReportError::OutOfTime {
                sent_at: report.sent_at,
                now,
            });
        }
        Ok(report)
    }
}
