//! The DSSE envelope: the signed container of every message.
//!
//! ```json
//! {"payloadType": "application/vnd.deployd.v1+json",
//!  "payload": "<base64 of the payload bytes>",
//!  "signatures": [{"keyid": "<key name>", "sig": "<base64, 64 bytes>"}]}
//! ```
//!
//! Signatures are over the pre-authentication encoding (PAE) of the payload
//! type and the exact payload bytes, so nothing is ever re-serialised to be
//! verified: Ed25519 by a Nix-format key named by its name, or an SSHSIG
//! blob (`ssh-keygen -Y sign -n deployd`) named by the SSH key's `SHA256:`
//! fingerprint. Parsing an envelope checks only its shape; which signature
//! counts is the verifier's business.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::Signature;

use crate::keys::SecretKey;
use crate::names::is_ssh_fingerprint;
use crate::ssh::MAX_SSHSIG_BYTES;

/// The payload type of every deployd message.
pub const PAYLOAD_TYPE: &str = "application/vnd.deployd.v1+json";
/// The largest envelope accepted, in bytes. A deploy request is well under
/// 2 KiB; a rollout to [`crate::MAX_ROLLOUT_HOSTS`] hosts, signed once,
/// under 200 KiB.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;
/// The most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 8;

/// Why bytes are not a well-formed envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not UTF-8.
    #[error("the envelope is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The JSON does not have the DSSE shape (or has unknown fields).
    #[error("not a DSSE envelope")]
    Json(#[source] serde_json::Error),
    /// A base64 field does not decode.
    #[error("{field} is not standard base64")]
    Base64 {
        /// `payload` or `sig`.
        field: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// A signature is not 64 bytes long.
    #[error("a signature has {found} bytes, Ed25519 signatures have 64")]
    SignatureLength {
        /// Bytes found.
        found: usize,
    },
    /// An SSH signature is larger than any valid one.
    #[error("an SSH signature has {found} bytes, at most {MAX_SSHSIG_BYTES} are accepted")]
    SshSignatureLength {
        /// Bytes found.
        found: usize,
    },
    /// Two signatures name the same key.
    #[error("two signatures name the same key")]
    DuplicateKeyid,
    /// No signature at all, or more than allowed.
    #[error("an envelope carries 1 to {MAX_SIGNATURES} signatures, this one {found}")]
    SignatureCount {
        /// Signatures found.
        found: usize,
    },
}

/// The envelope as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireEnvelope {
    payload_type: String,
    payload: String,
    signatures: Vec<WireSignature>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    keyid: String,
    sig: String,
}

/// A parsed envelope: decoded payload bytes and signatures, nothing verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    payload_type: String,
    payload: Vec<u8>,
    signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The name of the key that claims to have signed: a Nix-format key's
    /// name, or an SSH key's `SHA256:` fingerprint.
    pub keyid: String,
    /// The signature.
    pub sig: SignatureValue,
}

/// A signature's bytes, of the kind its keyid says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureValue {
    /// Ed25519 by a Nix-format key.
    Ed25519(Signature),
    /// An SSHSIG blob (the armor's base64, decoded), not yet parsed.
    Sshsig(Vec<u8>),
}

impl SignatureValue {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            SignatureValue::Ed25519(signature) => signature.to_bytes().to_vec(),
            SignatureValue::Sshsig(blob) => blob.clone(),
        }
    }
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`.
pub fn pre_authentication_encoding(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let payload_len = payload.len().to_string();
    let mut pae = Vec::with_capacity(16 + type_len.len() + payload_type.len() + payload.len());
    for part in [
        b"DSSEv1".as_slice(),
        type_len.as_bytes(),
        payload_type.as_bytes(),
        payload_len.as_bytes(),
    ] {
        pae.extend_from_slice(part);
        pae.push(b' ');
    }
    pae.extend_from_slice(payload);
    pae
}

impl Envelope {
    /// Signs `payload` of `payload_type` with each key.
    pub fn sign(payload_type: &str, payload: Vec<u8>, keys: &[&SecretKey]) -> Envelope {
        let pae = pre_authentication_encoding(payload_type, &payload);
        let signatures = keys
            .iter()
            .map(|key| EnvelopeSignature {
                keyid: key.name().to_string(),
                sig: SignatureValue::Ed25519(key.sign(&pae)),
            })
            .collect();
        Envelope::new(payload_type, payload, signatures)
    }

    /// An envelope of signatures made elsewhere (by `ssh-agent`, say) over
    /// [`pre_authentication_encoding`] of this payload.
    pub fn new(
        payload_type: &str,
        payload: Vec<u8>,
        signatures: Vec<EnvelopeSignature>,
    ) -> Envelope {
        Envelope {
            payload_type: payload_type.to_owned(),
            payload,
            signatures,
        }
    }

    /// Parses an envelope's JSON, checking only its shape. The caller bounds
    /// the size first.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let text = std::str::from_utf8(bytes).map_err(EnvelopeError::NotUtf8)?;
        let wire: WireEnvelope = serde_json::from_str(text).map_err(EnvelopeError::Json)?;
        let found = wire.signatures.len();
        if found == 0 || found > MAX_SIGNATURES {
            return Err(EnvelopeError::SignatureCount { found });
        }
        for (index, signature) in wire.signatures.iter().enumerate() {
            if wire.signatures[..index]
                .iter()
                .any(|earlier| earlier.keyid == signature.keyid)
            {
                return Err(EnvelopeError::DuplicateKeyid);
            }
        }
        let payload = decode("payload", &wire.payload)?;
        let signatures = wire
            .signatures
            .into_iter()
            .map(|signature| {
                let bytes = decode("sig", &signature.sig)?;
                let sig = if is_ssh_fingerprint(&signature.keyid) {
                    if bytes.len() > MAX_SSHSIG_BYTES {
                        return Err(EnvelopeError::SshSignatureLength { found: bytes.len() });
                    }
                    SignatureValue::Sshsig(bytes)
                } else {
                    let bytes: [u8; 64] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| EnvelopeError::SignatureLength { found: bytes.len() })?;
                    SignatureValue::Ed25519(Signature::from_bytes(&bytes))
                };
                Ok(EnvelopeSignature {
                    keyid: signature.keyid,
                    sig,
                })
            })
            .collect::<Result<_, EnvelopeError>>()?;
        Ok(Envelope {
            payload_type: wire.payload_type,
            payload,
            signatures,
        })
    }

    /// The envelope as JSON bytes, ready to send.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireEnvelope {
            payload_type: self.payload_type.clone(),
            payload: STANDARD.encode(&self.payload),
            signatures: self
                .signatures
                .iter()
                .map(|signature| WireSignature {
                    keyid: signature.keyid.clone(),
                    sig: STANDARD.encode(signature.sig.to_bytes()),
                })
                .collect(),
        };
        serde_json::to_vec(&wire).unwrap_or_else(|_| unreachable!("strings always serialize"))
    }

    /// The payload type as received.
    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// The payload bytes as received (decoded from base64).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The signatures as received.
    pub fn signatures(&self) -> &[EnvelopeSignature] {
        &self.signatures
    }

    /// The bytes the signatures are over.
    pub fn pre_authentication_encoding(&self) -> Vec<u8> {
        pre_authentication_encoding(&self.payload_type, &self.payload)
    }
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD
        .decode(text)
        .map_err(|source| EnvelopeError::Base64 { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The example from the DSSE protocol document.
        let pae = pre_authentication_encoding("http://example.com/HelloWorld", b"hello world");
        assert_eq!(
            pae,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(
            pre_authentication_encoding("", b""),
            b"DSSEv1 0  0 ".to_vec()
        );
    }

    #[test]
    fn json_round_trip() {
        let key = SecretKey::generate("k".parse().expect("name")).expect("random");
        let envelope = Envelope::sign(PAYLOAD_TYPE, b"{}".to_vec(), &[&key]);
        let json = envelope.to_json();
        let text = String::from_utf8(json.clone()).expect("utf-8");
        assert!(text.starts_with(r#"{"payloadType":"application/vnd.deployd.v1+json","payload":"e30=","signatures":[{"keyid":"k","sig":""#), "{text}");
        assert_eq!(Envelope::parse(&json).expect("parse"), envelope);
    }

    #[test]
    fn shape_errors() {
        let no_sigs = br#"{"payloadType":"t","payload":"e30=","signatures":[]}"#;
        assert!(matches!(
            Envelope::parse(no_sigs),
            Err(EnvelopeError::SignatureCount { found: 0 })
        ));
        let short_sig =
            br#"{"payloadType":"t","payload":"e30=","signatures":[{"keyid":"k","sig":"AAAA"}]}"#;
        assert!(matches!(
            Envelope::parse(short_sig),
            Err(EnvelopeError::SignatureLength { found: 3 })
        ));
        let extra = br#"{"payloadType":"t","payload":"e30=","signatures":[],"x":1}"#;
        assert!(matches!(
            Envelope::parse(extra),
            Err(EnvelopeError::Json(_))
        ));
        let unpadded =
            br#"{"payloadType":"t","payload":"e30","signatures":[{"keyid":"k","sig":"AAAA"}]}"#;
        assert!(matches!(
            Envelope::parse(unpadded),
            Err(EnvelopeError::Base64 {
                field: "payload",
                ..
            })
        ));
    }
}
