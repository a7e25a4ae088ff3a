//! deployd's trust boundary: keys, the signed wire format and its verification.
//!
//! Every message a deployd host acts on is a DSSE envelope ([`Envelope`])
//! signed with an Ed25519 key in Nix's key-file format ([`SecretKey`],
//! [`PublicKey`]), or with an SSH key or certificate as an SSHSIG ([`ssh`]);
//! one message may serve several hosts ([`ROLLOUT_PAYLOAD_TYPE`]); a host
//! that pulls reads a [`DesiredState`] from a channel and reports back with
//! a [`HostReport`] signed by its own host key. The [`Verifier`] checks the signature over the exact bytes
//! received, then parses the payload into a [`Message`] whose fields check
//! themselves ([`StorePath`], [`HostName`], [`Nonce`], ...), then runs the
//! remaining checks of the wire format (docs/src/design/wire-format.md) in order. Senders build and sign messages
//! with [`Message::new`] and [`Message::sign`].
//!
//! This crate has no I/O beyond reading key files and no async runtime.

pub mod api;
mod desired;
mod envelope;
mod error;
mod failure;
mod keys;
mod kinds;
mod names;
mod payload;
pub mod plan;
mod replay;
mod report;
mod rollout;
mod sign;
pub mod ssh;
mod store_path;
mod trust;
mod verify;

pub use desired::{
    DesiredState, DEFAULT_MAX_DESIRED_AGE_S, DESIRED_PAYLOAD_TYPE, LONGEST_DESIRED_AGE_S,
};
pub use envelope::{
    pre_authentication_encoding, Envelope, EnvelopeError, EnvelopeSignature, SignatureValue,
    MAX_ENVELOPE_BYTES, MAX_SIGNATURES, PAYLOAD_TYPE,
};
pub use error::{ErrorBody, ErrorCode, RejectError};
pub use failure::FailureCode;
pub use keys::{KeyError, PublicKey, SecretKey};
pub use kinds::{Action, Kind, Permission, Permissions};
pub use names::{DeployId, HostName, KeyName, NameError, Nonce, Revision};
pub use payload::{
    DeployRef, DeployRequest, Message, PayloadError, ReadRequest, Request, MAX_CONFIRM_WITHIN_S,
    MAX_WINDOW_S,
};
pub use replay::{Clock, FixedClock, MemoryNonceStore, NonceStore, NonceStoreError, SystemClock};
pub use report::{HostReport, ReportError, REPORT_PAYLOAD_TYPE};
pub use rollout::{rollout_payload, RolloutError, MAX_ROLLOUT_HOSTS, ROLLOUT_PAYLOAD_TYPE};
pub use sign::DEFAULT_LIFETIME_S;
pub use store_path::{StorePath, StorePathError, StorePathRule, STORE_DIR};
pub use trust::{DuplicateKeyName, TrustedKey, TrustedKeys};
pub use verify::{
    Arrival, DesiredArrival, Endpoint, Verified, VerifiedDesired, Verifier, CLOCK_SKEW_S,
};

/// Re-exported so users name the same signature types as this crate.
pub use ed25519_dalek;
