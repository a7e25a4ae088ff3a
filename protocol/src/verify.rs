//! The verifier: every check the wire format lists (docs/src/design/wire-format.md), in its order, each failure with
//! its own error.
//!
//! 1. the envelope parses (bounded size, UTF-8, DSSE shape);
//! 2. a signature is by a trusted key, or by an SSH certificate from a
//!    trusted CA (`unknown_key`);
//! 3. such a signature verifies over the received payload bytes: Ed25519
//!    with `verify_strict`, or SSHSIG (`bad_signature`); an SSH certificate
//!    is of type user, valid now (`expired`, `not_yet_valid`), with a
//!    principal the host accepts and no unknown critical option, and a
//!    security key was touched (`forbidden`);
//! 4. the payload parses: deployd's type, known fields only (`bad_request`);
//! 5. the kind matches the endpoint and a signing key may sign it (`forbidden`);
//! 6. the host is this host (`wrong_host`; a rollout that does not name
//!    this host is refused when its payload is read, step 4);
//! 7. now is inside the window, give or take [`CLOCK_SKEW_S`] (`expired`,
//!    `not_yet_valid`);
//! 8. the nonce was never seen (`replayed`); a desired state's sequence is
//!    above the last applied from its channel (`replayed`), checked first;
//! 9. the store path is well formed (`invalid_store_path`);
//! 10. a deploy is not older than the active one, unless it says
//!     `allow_downgrade` and a signing key may downgrade (`downgrade`).
//!
//! Only when all hold is the nonce recorded: a rejected message changes nothing.

use crate::desired::{parse_desired, DESIRED_PAYLOAD_TYPE};
use crate::envelope::SignatureValue;
use crate::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use crate::error::RejectError;
use crate::kinds::Permissions;
use crate::kinds::{Kind, Permission};
use crate::names::{is_ssh_fingerprint, quote, DeployId, HostName, KeyName};
use crate::payload::{parse_payload, Addressed, Message, PayloadError, Request};
use crate::replay::{Clock, NonceStore};
use crate::ssh::{SignatureVerdict, Signer};
use crate::trust::TrustedKeys;

/// Clock difference tolerated between sender and host, in seconds.
pub const CLOCK_SKEW_S: u64 = 2 * 60;

/// The endpoint a message arrived at: what it must authorise.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// `POST /v1/deploy`.
    Deploy,
    /// `POST /v1/deploys/{deploy_id}/confirm`.
    Confirm {
        /// The deploy named in the URL.
        deploy_id: &'a DeployId,
    },
    /// `POST /v1/rollback`.
    Rollback,
    /// A read request that needs a signature.
    Read {
        /// Its HTTP method.
        method: &'a str,
        /// Its path (with the query, if any).
        path: &'a str,
    },
}

impl Endpoint<'_> {
    fn kind(&self) -> Kind {
        match self {
            Endpoint::Deploy => Kind::Deploy,
            Endpoint::Confirm { .. } => Kind::Confirm,
            Endpoint::Rollback => Kind::Rollback,
            Endpoint::Read { .. } => Kind::Read,
        }
    }
}

/// What the host knows when a message arrives.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// Where the message was sent.
    pub endpoint: Endpoint<'a>,
    /// `issued_at` of the deploy that made the active system, if known.
    pub active_issued_at: Option<u64>,
}

/// A message that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The trusted key that authorised it.
    pub key: KeyName,
    /// The message.
    pub message: Message,
}

/// What the host knows when it reads a desired state from a channel.
#[derive(Debug, Clone, Copy)]
pub struct DesiredArrival {
    /// The sequence of the last state it applied from this channel.
    pub last_sequence: Option<u64>,
    /// `issued_at` of the deploy that made the active system, if known.
    pub active_issued_at: Option<u64>,
    /// The longest window it accepts (`max_desired_age_s`).
    pub max_age_s: u64,
}

/// A desired state that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDesired {
    /// Its place in its channel.
    pub sequence: u64,
    /// Its deploy, as [`Verifier::verify`] gives it.
    pub verified: Verified,
}

/// Checks signed messages for one host.
pub struct Verifier {
    trusted: TrustedKeys,
    host: HostName,
    clock: Box<dyn Clock>,
}

impl Verifier {
    /// A verifier for `host`, trusting `trusted`, reading time from `clock`.
    pub fn new(trusted: TrustedKeys, host: HostName, clock: Box<dyn Clock>) -> Self {
        Verifier {
            trusted,
            host,
            clock,
        }
    }

    /// The host this verifier accepts messages for.
    pub fn host(&self) -> &HostName {
        &self.host
    }

    /// Runs every check on the received bytes and, when all pass, records the
    /// nonce in `nonces`.
    pub fn verify(
        &self,
        bytes: &[u8],
        arrival: &Arrival<'_>,
        nonces: &mut dyn NonceStore,
    ) -> Result<Verified, RejectError> {
        let envelope = parse_bounded(bytes)?;
        let signers = self.verified_signers(&envelope)?;
        let message = match parse_payload(envelope.payload_type(), envelope.payload(), &self.host)
            .map_err(RejectError::MalformedPayload)?
        {
            Addressed::Message(message) => message,
            Addressed::OtherHosts(hosts) => {
                return Err(RejectError::WrongHost {
                    expected: self.host.clone(),
                    found: hosts,
                })
            }
        };
        self.check_message(&signers, message, arrival, nonces, |_| Ok(()))
    }

    /// Runs every check on a desired state read from a channel: those of a
    /// deploy, its window bounded by `desired.max_age_s` instead of 15
    /// minutes, and its sequence above `desired.last_sequence` (the last
    /// applied from that channel; `replayed` otherwise). Records the nonce
    /// when all pass.
    pub fn verify_desired(
        &self,
        bytes: &[u8],
        desired: &DesiredArrival,
        nonces: &mut dyn NonceStore,
    ) -> Result<VerifiedDesired, RejectError> {
        let envelope = parse_bounded(bytes)?;
        let signers = self.verified_signers(&envelope)?;
        if envelope.payload_type() != DESIRED_PAYLOAD_TYPE {
            return Err(RejectError::MalformedPayload(PayloadError::PayloadType {
                found: quote(envelope.payload_type()),
            }));
        }
        let state = parse_desired(envelope.payload(), desired.max_age_s)
            .map_err(RejectError::MalformedPayload)?;
        let sequence = state.sequence;
        let arrival = Arrival {
            endpoint: Endpoint::Deploy,
            active_issued_at: desired.active_issued_at,
        };
        let verified =
            self.check_message(&signers, state.message, &arrival, nonces, |_| match desired
                .last_sequence
            {
                Some(last) if sequence <= last => Err(RejectError::OldSequence { sequence, last }),
                _ => Ok(()),
            })?;
        Ok(VerifiedDesired { sequence, verified })
    }

    /// Steps 5 to 10 on a parsed message, with `before_nonce` run after the
    /// window's check; records the nonce when all pass.
    fn check_message(
        &self,
        signers: &[Signer],
        message: Message<String>,
        arrival: &Arrival<'_>,
        nonces: &mut dyn NonceStore,
        before_nonce: impl FnOnce(&Message<String>) -> Result<(), RejectError>,
    ) -> Result<Verified, RejectError> {
        let key = authorise(signers, &message, &arrival.endpoint)?;
        self.check_host(&message.host)?;
        self.check_window(&message)?;
        before_nonce(&message)?;
        if let Some(nonce) = message.request.nonce() {
            if nonces.contains(nonce).map_err(RejectError::NonceStore)? {
                return Err(RejectError::Replayed {
                    nonce: nonce.clone(),
                });
            }
        }
        let message = message
            .check_store_path()
            .map_err(RejectError::InvalidStorePath)?;
        check_downgrade(signers, &message, arrival.active_issued_at)?;
        if let Some(nonce) = message.request.nonce() {
            let keep_until = message.expires_at.saturating_add(CLOCK_SKEW_S);
            if !nonces
                .insert(nonce, keep_until)
                .map_err(RejectError::NonceStore)?
            {
                return Err(RejectError::Replayed {
                    nonce: nonce.clone(),
                });
            }
        }
        Ok(Verified { key, message })
    }

    /// Steps 2 and 3: the trusted keys whose signatures verify.
    fn verified_signers(&self, envelope: &Envelope) -> Result<Vec<Signer>, RejectError> {
        let pae = envelope.pre_authentication_encoding();
        let now = self.clock.now();
        let mut first_refusal = None;
        let mut signers = Vec::new();
        // Key ids are unique within an envelope (its parser checks), so each
        // trusted key costs at most one verification.
        for signature in envelope.signatures() {
            let verdict = match &signature.sig {
                SignatureValue::Ed25519(sig) => {
                    let Some(trusted) = self.trusted.get(&signature.keyid) else {
                        continue;
                    };
                    let key = trusted.key.verifying_key();
                    if key.verify_strict(&pae, sig).is_ok() {
                        SignatureVerdict::Verified(Signer {
                            name: trusted.key.name().clone(),
                            may: trusted.may,
                        })
                    } else {
                        SignatureVerdict::Refused(RejectError::BadSignature {
                            key: trusted.key.name().clone(),
                        })
                    }
                }
                SignatureValue::Sshsig(blob) if is_ssh_fingerprint(&signature.keyid) => {
                    self.trusted.ssh().verify(&signature.keyid, blob, &pae, now)
                }
                SignatureValue::Sshsig(_) => continue,
            };
            match verdict {
                SignatureVerdict::Verified(signer) => signers.push(signer),
                SignatureVerdict::Refused(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
                SignatureVerdict::NotTrusted => {}
            }
        }
        if !signers.is_empty() {
            return Ok(signers);
        }
        match first_refusal {
            Some(refusal) => Err(refusal),
            None => {
                let keyids: Vec<&str> = envelope
                    .signatures()
                    .iter()
                    .map(|signature| signature.keyid.as_str())
                    .collect();
                Err(RejectError::UnknownKey {
                    keyids: quote(&keyids.join(", ")),
                })
            }
        }
    }

    fn check_host(&self, host: &HostName) -> Result<(), RejectError> {
        if host != &self.host {
            return Err(RejectError::WrongHost {
                expected: self.host.clone(),
                found: format!("host {host}"),
            });
        }
        Ok(())
    }

    fn check_window<P>(&self, message: &Message<P>) -> Result<(), RejectError> {
        let now = self.clock.now();
        if now.saturating_add(CLOCK_SKEW_S) < message.issued_at {
            return Err(RejectError::NotYetValid {
                issued_at: message.issued_at,
                now,
            });
        }
        if now > message.expires_at.saturating_add(CLOCK_SKEW_S) {
            return Err(RejectError::Expired {
                expires_at: message.expires_at,
                now,
            });
        }
        Ok(())
    }
}

fn parse_bounded(bytes: &[u8]) -> Result<Envelope, RejectError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(RejectError::TooLarge {
            size: bytes.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    Envelope::parse(bytes).map_err(RejectError::MalformedEnvelope)
}

/// Step 5: the message is for this endpoint and a signer may sign its kind.
/// Returns the key that authorises it.
fn authorise<P>(
    signers: &[Signer],
    message: &Message<P>,
    endpoint: &Endpoint<'_>,
) -> Result<KeyName, RejectError> {
    let found = message.request.kind();
    if found != endpoint.kind() {
        return Err(RejectError::WrongKind {
            expected: endpoint.kind(),
            found,
        });
    }
    match (&message.request, endpoint) {
        (Request::Confirm(reference), Endpoint::Confirm { deploy_id })
            if &reference.deploy_id != *deploy_id =>
        {
            return Err(RejectError::WrongTarget {
                authorised: format!("confirming deploy {}", reference.deploy_id),
                requested: format!("confirming deploy {deploy_id}"),
            });
        }
        (Request::Read(read), Endpoint::Read { method, path })
            if read.method != *method || read.path != *path =>
        {
            return Err(RejectError::WrongTarget {
                authorised: format!("{} {}", read.method, read.path),
                requested: quote(&format!("{method} {path}")),
            });
        }
        _ => {}
    }
    let permission = found.permission();
    signers
        .iter()
        .find(|signer| signer.may.allows(permission))
        .map(|signer| signer.name.clone())
        .ok_or_else(|| RejectError::NotPermitted {
            key: signers[0].name.clone(),
            permission,
        })
}

/// Step 10: an older deploy needs `allow_downgrade` and a key that may downgrade.
fn check_downgrade(
    signers: &[Signer],
    message: &Message,
    active_issued_at: Option<u64>,
) -> Result<(), RejectError> {
    let Request::Deploy(deploy) = &message.request else {
        return Ok(());
    };
    let Some(active_issued_at) = active_issued_at else {
        return Ok(());
    };
    if message.issued_at >= active_issued_at {
        return Ok(());
    }
    let why = if !deploy.allow_downgrade {
        "the request does not set allow_downgrade"
    } else if !signers.iter().any(|signer| may_downgrade(signer.may)) {
        "no key that signed it may downgrade"
    } else {
        return Ok(());
    };
    Err(RejectError::Downgrade {
        issued_at: message.issued_at,
        active_issued_at,
        why,
    })
}

fn may_downgrade(may: Permissions) -> bool {
    may.allows(Permission::Deploy) && may.allows(Permission::Downgrade)
}
