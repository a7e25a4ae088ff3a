//! Who signs (a key, alone or certified), and SSHSIG blobs and envelopes
//! laid out field by field as `PROTOCOL.sshsig` and `PROTOCOL.u2f` say.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_protocol::{rollout_payload, ROLLOUT_PAYLOAD_TYPE};
use deployd_protocol::{Envelope, EnvelopeSignature, Message, SignatureValue, PAYLOAD_TYPE};
use ssh_encoding::Encode;
use ssh_key::{Algorithm, Certificate, HashAlg, PrivateKey, Signature, SigningKey, SshSig};

use super::keys::{issue, Authenticator, CertificateSpec, SshKey};

/// Who signs a message: a key, alone or with its certificate.
pub struct SshIdentity {
    /// The key that makes the signature.
    pub key: SshKey,
    /// Its certificate, sent in the SSHSIG in place of the bare key.
    pub certificate: Option<Certificate>,
}

/// What an SSHSIG names besides its key and signature.
#[derive(Debug, Clone, Copy)]
pub struct SshsigOptions<'a> {
    /// `deployd` for deployd's signatures.
    pub namespace: &'a str,
    /// `sha512` for deployd's signatures.
    pub hash: HashAlg,
}

impl SshsigOptions<'static> {
    /// What `ssh-keygen -Y sign -n deployd` writes.
    pub const DEPLOYD: SshsigOptions<'static> = SshsigOptions {
        namespace: "deployd",
        hash: HashAlg::Sha512,
    };
}

impl SshIdentity {
    /// A plain key, signing alone.
    pub fn plain(key: PrivateKey) -> SshIdentity {
        SshIdentity {
            key: SshKey::Plain(key),
            certificate: None,
        }
    }

    /// A security key, signing alone.
    pub fn security(authenticator: Authenticator) -> SshIdentity {
        SshIdentity {
            key: SshKey::Security(authenticator),
            certificate: None,
        }
    }

    /// This key with a certificate `ca` issued for it.
    pub fn certified(mut self, ca: &impl SigningKey, spec: &CertificateSpec<'_>) -> SshIdentity {
        self.certificate = Some(issue(ca, &self.key.public_key(), spec));
        self
    }

    /// Sets the flags the security key reports from now on.
    pub fn set_flags(&mut self, flags: u8) {
        match &mut self.key {
            SshKey::Security(authenticator) => authenticator.flags = flags,
            SshKey::Plain(_) => panic!("a plain key has no authenticator flags"),
        }
    }

    /// The key's `SHA256:` fingerprint, the keyid of its signatures.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The key, or its certificate, as the SSHSIG carries it.
    pub fn public_blob(&self) -> Vec<u8> {
        match &self.certificate {
            Some(certificate) => certificate_blob(certificate),
            None => encoded(&self.key.public_key()),
        }
    }

    /// The SSHSIG blob over `message`, as `ssh-keygen -Y sign -n deployd`
    /// makes it.
    pub fn sshsig(&self, message: &[u8]) -> Vec<u8> {
        self.sshsig_with(message, SshsigOptions::DEPLOYD)
    }

    /// The SSHSIG blob over `message` for another namespace or hash.
    pub fn sshsig_with(&self, message: &[u8], options: SshsigOptions<'_>) -> Vec<u8> {
        // ssh-key's own implementation of the signed data, independent of
        // deployd's.
        let signed = SshSig::signed_data(options.namespace, options.hash, message)
            .expect("SSHSIG signed data");
        let signature = self.key.sign(&signed);
        sshsig_blob(SshsigFields {
            public_key: &self.public_blob(),
            namespace: options.namespace,
            hash: options.hash.as_str(),
            signature: &signature_blob(&signature),
        })
    }

    /// A deployd envelope of `message`, signed by this identity.
    pub fn envelope(&self, message: &Message) -> Vec<u8> {
        self.sign_payload(PAYLOAD_TYPE, message.to_payload_bytes())
    }

    /// One rollout carrying `messages`, one per host, signed once.
    pub fn rollout(&self, messages: &[Message]) -> Vec<u8> {
        let payload = rollout_payload(messages).expect("messages that differ per host only");
        self.sign_payload(ROLLOUT_PAYLOAD_TYPE, payload)
    }

    /// An envelope of any payload, signed by this identity.
    pub fn sign_payload(&self, payload_type: &str, payload: Vec<u8>) -> Vec<u8> {
        let pae = deployd_protocol::pre_authentication_encoding(payload_type, &payload);
        envelope_with(
            &self.fingerprint(),
            payload_type,
            payload,
            self.sshsig(&pae),
        )
    }
}

/// An envelope carrying one SSHSIG `blob` under `keyid`, as received.
pub fn envelope_with(keyid: &str, payload_type: &str, payload: Vec<u8>, blob: Vec<u8>) -> Vec<u8> {
    let signature = EnvelopeSignature {
        keyid: keyid.to_owned(),
        sig: SignatureValue::Sshsig(blob),
    };
    Envelope::new(payload_type, payload, vec![signature]).to_json()
}

/// `envelope` (JSON bytes) with its first signature's SSHSIG blob edited:
/// decoded from the envelope, changed, encoded back.
pub fn with_edited_sshsig(envelope: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(envelope).expect("envelope JSON");
    let slot = &mut value["signatures"][0]["sig"];
    let mut blob = STANDARD
        .decode(slot.as_str().expect("base64 text"))
        .expect("base64");
    edit(&mut blob);
    *slot = serde_json::Value::String(STANDARD.encode(blob));
    serde_json::to_vec(&value).expect("JSON")
}

/// The fields of an SSHSIG blob that vary.
pub struct SshsigFields<'a> {
    /// The encoded key or certificate.
    pub public_key: &'a [u8],
    /// The namespace.
    pub namespace: &'a str,
    /// The hash's name.
    pub hash: &'a str,
    /// The encoded signature.
    pub signature: &'a [u8],
}

/// An SSHSIG blob, field by field as `PROTOCOL.sshsig` lays it out.
pub fn sshsig_blob(fields: SshsigFields<'_>) -> Vec<u8> {
    let mut blob = b"SSHSIG".to_vec();
    1u32.encode(&mut blob).expect("version");
    for field in [
        fields.public_key,
        fields.namespace.as_bytes(),
        b"".as_slice(),
        fields.hash.as_bytes(),
        fields.signature,
    ] {
        field.encode(&mut blob).expect("string");
    }
    blob
}

/// A signature as OpenSSH encodes it: its type, its bytes and, for a
/// security key, the flags byte and counter after them (`PROTOCOL.u2f`).
pub fn signature_blob(signature: &Signature) -> Vec<u8> {
    let mut blob = encoded(signature.algorithm().as_str().as_bytes());
    let bytes = signature.as_bytes();
    match signature.algorithm() {
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {
            let (raw, flags_and_counter) = bytes.split_at(bytes.len() - 5);
            raw.encode(&mut blob).expect("string");
            blob.extend_from_slice(flags_and_counter);
        }
        _ => bytes.encode(&mut blob).expect("string"),
    }
    blob
}

/// A certificate as OpenSSH encodes it: `ssh-key` writes the fields, and
/// the CA's signature, the last, is written by [`signature_blob`] (for a CA
/// on a security key, `ssh-key` 0.6 misplaces the flags and counter).
pub fn certificate_blob(certificate: &Certificate) -> Vec<u8> {
    let mut bytes = certificate.to_bytes().expect("certificate encodes");
    let signature = signature_blob(certificate.signature());
    bytes.truncate(bytes.len() - signature.len() - 4);
    signature.encode(&mut bytes).expect("string");
    bytes
}

fn encoded(value: &(impl Encode + ?Sized)) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.encode(&mut bytes).expect("encodes");
    bytes
}
