//! OpenSSH's SSHSIG signatures (`PROTOCOL.sshsig`), as `ssh-keygen -Y sign`
//! makes them: the blob is read field by field, its key and signature by
//! `ssh-key`, and the checks are deployd's: namespace `deployd`, hash
//! sha512, a key type deployd accepts, and for a security key the flags the
//! authenticator set.

use ed25519_dalek::{Signature as Ed25519Signature, VerifyingKey};
use sha2::{Digest, Sha256, Sha512};
use ssh_encoding::{Decode, Encode, Reader};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, Signature};

/// The namespace of every deployd signature (`ssh-keygen -Y sign -n deployd`).
pub const SSHSIG_NAMESPACE: &str = "deployd";
/// The only hash deployd accepts (ssh-keygen's default).
pub const SSHSIG_HASH: &str = "sha512";
/// The largest SSHSIG blob accepted: a certificate with a few principals
/// and a signature fit in well under 2 KiB.
pub const MAX_SSHSIG_BYTES: usize = 8 * 1024;

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;
/// A FIDO authenticator's flag: the user touched the key.
pub(crate) const FLAG_USER_PRESENT: u8 = 0x01;
/// A FIDO authenticator's flag: the user was verified (PIN or biometrics).
pub(crate) const FLAG_USER_VERIFIED: u8 = 0x04;

/// Why an SSHSIG blob is refused before any key is looked at.
#[derive(Debug, thiserror::Error)]
pub enum SshsigError {
    /// Larger than [`MAX_SSHSIG_BYTES`].
    #[error("the SSH signature is {0} bytes, more than {MAX_SSHSIG_BYTES}")]
    TooLarge(usize),
    /// Not the SSHSIG encoding.
    #[error("not an SSHSIG signature: {0}")]
    Encoding(String),
    /// Another version than 1.
    #[error("SSHSIG version {0} is not 1")]
    Version(u32),
    /// Signed for another use than deployd's.
    #[error("the SSH signature is for namespace \"{0}\", not \"{SSHSIG_NAMESPACE}\"")]
    Namespace(String),
    /// Another hash than sha512.
    #[error("the SSH signature hashes with \"{0}\", deployd takes \"{SSHSIG_HASH}\"")]
    Hash(String),
    /// A key type deployd does not take.
    #[error("SSH key type {0} is not accepted (ssh-ed25519, ecdsa-sha2-nistp256 and their security-key forms are)")]
    KeyType(String),
}

/// Who made an SSH signature: a plain key, or a key with its certificate.
#[derive(Debug, Clone)]
pub enum SshSigner {
    /// A bare public key.
    Key(KeyData),
    /// A certificate; its key made the signature.
    Certificate(Box<Certificate>),
}

impl SshSigner {
    /// The key that made the signature.
    pub fn key(&self) -> &KeyData {
        match self {
            SshSigner::Key(key) => key,
            SshSigner::Certificate(certificate) => certificate.public_key(),
        }
    }
}

/// A parsed SSHSIG blob: nothing verified yet.
#[derive(Debug, Clone)]
pub struct Sshsig {
    /// The key or certificate in the blob.
    pub signer: SshSigner,
    /// For a certificate, the bytes its CA signed, as received; empty for
    /// a bare key.
    certificate_signed: Vec<u8>,
    reserved: Vec<u8>,
    signature: Signature,
}

/// What a verified signature says about how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureFlags {
    /// The authenticator's flags, for a security key; `None` for a plain key.
    pub security_key: Option<u8>,
}

impl SignatureFlags {
    /// A plain key's signature, or a security key's made with a touch.
    pub fn user_present(self) -> bool {
        self.security_key
            .is_none_or(|flags| flags & FLAG_USER_PRESENT != 0)
    }

    /// A security key's signature made with a PIN or biometrics.
    pub fn user_verified(self) -> bool {
        self.security_key
            .is_some_and(|flags| flags & FLAG_USER_VERIFIED != 0)
    }
}

impl Sshsig {
    /// Parses a binary SSHSIG blob (the armor's base64, decoded), checking
    /// namespace, hash and key type.
    pub fn parse(mut bytes: &[u8]) -> Result<Sshsig, SshsigError> {
        if bytes.len() > MAX_SSHSIG_BYTES {
            return Err(SshsigError::TooLarge(bytes.len()));
        }
        let encoding = |error: ssh_encoding::Error| SshsigError::Encoding(error.to_string());
        let reader = &mut bytes;
        let mut magic = [0u8; 6];
        reader.read(&mut magic).map_err(encoding)?;
        if &magic != MAGIC {
            return Err(SshsigError::Encoding("no SSHSIG preamble".into()));
        }
        let version = u32::decode(reader).map_err(encoding)?;
        if version != VERSION {
            return Err(SshsigError::Version(version));
        }
        let public_key = Vec::<u8>::decode(reader).map_err(encoding)?;
        let namespace = String::decode(reader).map_err(encoding)?;
        let reserved = Vec::<u8>::decode(reader).map_err(encoding)?;
        let hash = String::decode(reader).map_err(encoding)?;
        let signature = Vec::<u8>::decode(reader).map_err(encoding)?;
        if !reader.is_empty() {
            return Err(SshsigError::Encoding("bytes after the signature".into()));
        }
        if namespace != SSHSIG_NAMESPACE {
            return Err(SshsigError::Namespace(crate::names::quote(&namespace)));
        }
        if hash != SSHSIG_HASH {
            return Err(SshsigError::Hash(crate::names::quote(&hash)));
        }
        let signer = parse_signer(&public_key)?;
        let certificate_signed = match &signer {
            SshSigner::Certificate(certificate) => {
                certificate_signed_bytes(&public_key, certificate.signature())?.to_vec()
            }
            SshSigner::Key(_) => Vec::new(),
        };
        let signature = parse_signature(&signature)?;
        if signature.algorithm() != signer.key().algorithm() {
            return Err(SshsigError::Encoding(format!(
                "a {} signature by a {} key",
                signature.algorithm(),
                signer.key().algorithm()
            )));
        }
        Ok(Sshsig {
            signer,
            certificate_signed,
            reserved,
            signature,
        })
    }

    /// Verifies the signature over `message` with the signer's key. Returns
    /// the authenticator's flags; whether they suffice is the caller's call.
    pub fn verify(&self, message: &[u8]) -> Result<SignatureFlags, SignatureInvalid> {
        let signed = signed_data(&self.reserved, message);
        verify_raw(self.signer.key(), &signed, &self.signature)
    }

    /// Verifies the CA's signature on the certificate in the blob, over the
    /// certificate's bytes as received, as strictly as every other
    /// signature (`verify_strict`, no weak Ed25519 key): `ssh-key`'s own
    /// check re-encodes the certificate and takes any Ed25519 signature the
    /// lax equation allows, which a small-order CA key would let anyone
    /// forge. Whether the CA is trusted is the caller's call; a bare key
    /// has no CA signature and never passes.
    pub fn verify_certificate(&self) -> Result<(), SignatureInvalid> {
        let SshSigner::Certificate(certificate) = &self.signer else {
            return Err(SignatureInvalid);
        };
        verify_raw(
            certificate.signature_key(),
            &self.certificate_signed,
            certificate.signature(),
        )
        .map(|_| ())
    }
}

/// What a certificate's CA signed: every byte of it but its last field, the
/// CA's signature (`PROTOCOL.certkeys`).
fn certificate_signed_bytes<'a>(
    certificate: &'a [u8],
    signature: &Signature,
) -> Result<&'a [u8], SshsigError> {
    let malformed = || SshsigError::Encoding("certificate: signature field".into());
    // The signature's type and bytes; a security key's flags and counter
    // count the same inside the field as in `ssh-key`'s bytes.
    let signature_len = signature.encoded_len().map_err(|_| malformed())?;
    let field_start = certificate
        .len()
        .checked_sub(4 + signature_len)
        .ok_or_else(malformed)?;
    let (signed, field) = certificate.split_at(field_start);
    let declared = u32::try_from(signature_len).map_err(|_| malformed())?;
    if field[..4] != declared.to_be_bytes() {
        return Err(malformed());
    }
    Ok(signed)
}

/// The signature does not verify.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the SSH signature does not verify")]
pub struct SignatureInvalid;

/// What an SSH key signs for a message (`PROTOCOL.sshsig`): the preamble,
/// the namespace, the reserved field, the hash's name and the message's hash.
pub fn signed_data(reserved: &[u8], message: &[u8]) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    let digest = Sha512::digest(message);
    let fields: [&[u8]; 4] = [
        SSHSIG_NAMESPACE.as_bytes(),
        reserved,
        SSHSIG_HASH.as_bytes(),
        digest.as_slice(),
    ];
    for field in fields {
        field
            .encode(&mut data)
            .unwrap_or_else(|_| unreachable!("a Vec takes any write"));
    }
    data
}

/// The SSHSIG blob for `signature`, made by `signer` over [`signed_data`]
/// with an empty reserved field: what `ssh-keygen -Y sign` writes.
pub fn encode_sshsig(signer: &SshSigner, signature: &Signature) -> Result<Vec<u8>, ssh_key::Error> {
    let public_key = match signer {
        SshSigner::Key(key) => encoded(key)?,
        SshSigner::Certificate(certificate) => encoded_certificate(certificate)?,
    };
    let mut blob = MAGIC.to_vec();
    VERSION.encode(&mut blob)?;
    public_key.encode(&mut blob)?;
    SSHSIG_NAMESPACE.encode(&mut blob)?;
    Vec::<u8>::new().encode(&mut blob)?;
    SSHSIG_HASH.encode(&mut blob)?;
    encoded_signature(signature)?.encode(&mut blob)?;
    Ok(blob)
}

/// A signature as OpenSSH encodes it (`PROTOCOL.u2f` for a security key:
/// its flags byte and counter follow the signature string). `ssh-key` 0.6
/// writes them inside the string for `sk-ecdsa-sha2-nistp256@openssh.com`,
/// which neither OpenSSH nor [`Sshsig::parse`] reads, so both security-key
/// types are written here.
fn encoded_signature(signature: &Signature) -> Result<Vec<u8>, ssh_encoding::Error> {
    let algorithm = signature.algorithm();
    if !matches!(
        algorithm,
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
    ) {
        return encoded(signature);
    }
    let bytes = signature.as_bytes();
    let split = bytes
        .len()
        .checked_sub(5)
        .ok_or(ssh_encoding::Error::Length)?;
    let (raw, flags_and_counter) = bytes.split_at(split);
    let mut encoded = Vec::new();
    algorithm.as_str().encode(&mut encoded)?;
    raw.encode(&mut encoded)?;
    encoded.extend_from_slice(flags_and_counter);
    Ok(encoded)
}

/// A certificate's bytes, its CA's signature (the last field) written as
/// OpenSSH writes it: a CA on a security key signs with flags and counter,
/// which `ssh-key` would misplace (see [`encoded_signature`]). The field is
/// as long either way; its length prefix is checked.
fn encoded_certificate(certificate: &Certificate) -> Result<Vec<u8>, ssh_key::Error> {
    let mut bytes = certificate.to_bytes()?;
    let signature = encoded_signature(certificate.signature())?;
    let field_start = bytes
        .len()
        .checked_sub(signature.len())
        .filter(|start| *start >= 4)
        .ok_or(ssh_encoding::Error::Length)?;
    let declared = u32::try_from(signature.len()).map_err(|_| ssh_encoding::Error::Length)?;
    if bytes[field_start - 4..field_start] != declared.to_be_bytes() {
        return Err(ssh_encoding::Error::Length.into());
    }
    bytes.truncate(field_start);
    bytes.extend_from_slice(&signature);
    Ok(bytes)
}

fn encoded(value: &impl Encode) -> Result<Vec<u8>, ssh_encoding::Error> {
    let mut bytes = Vec::new();
    value.encode(&mut bytes)?;
    Ok(bytes)
}

fn parse_signer(bytes: &[u8]) -> Result<SshSigner, SshsigError> {
    let algorithm = String::decode(&mut &bytes[..])
        .map_err(|error| SshsigError::Encoding(format!("public key: {error}")))?;
    let signer = if algorithm.ends_with("-cert-v01@openssh.com") {
        let certificate = Certificate::from_bytes(bytes)
            .map_err(|error| SshsigError::Encoding(format!("certificate: {error}")))?;
        SshSigner::Certificate(Box::new(certificate))
    } else {
        let key = KeyData::decode(&mut &bytes[..])
            .map_err(|error| SshsigError::Encoding(format!("public key: {error}")))?;
        // `ssh-key` reads a length prefix inside the key without checking
        // that it matches what it reads, and leaves what follows the key
        // unread: only OpenSSH's exact encoding is taken, so that a blob
        // cannot be altered and still pass. (A certificate needs no such
        // check: its CA signed its bytes as received.)
        if encoded(&key).ok().as_deref() != Some(bytes) {
            return Err(SshsigError::Encoding(
                "public key: not in OpenSSH's encoding".into(),
            ));
        }
        SshSigner::Key(key)
    };
    check_key_type(signer.key())?;
    Ok(signer)
}

/// Reads the signature field: the signature's type, its bytes and, for a
/// security key, its flags and counter; nothing may follow.
fn parse_signature(mut bytes: &[u8]) -> Result<Signature, SshsigError> {
    let signature = Signature::decode(&mut bytes)
        .map_err(|error| SshsigError::Encoding(format!("signature: {error}")))?;
    if !bytes.is_empty() {
        return Err(SshsigError::Encoding(
            "signature: bytes after the signature".into(),
        ));
    }
    Ok(signature)
}

/// Refuses key types deployd does not verify.
pub(crate) fn check_key_type(key: &KeyData) -> Result<(), SshsigError> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        } => Ok(()),
        other => Err(SshsigError::KeyType(crate::names::quote(other.as_str()))),
    }
}

/// Verifies an SSH signature over `data` with `key`. Ed25519 signatures,
/// plain or from a security key, are checked with `verify_strict` as every
/// other deployd signature; ECDSA by the `p256` crate through `ssh-key`.
pub(crate) fn verify_raw(
    key: &KeyData,
    data: &[u8],
    signature: &Signature,
) -> Result<SignatureFlags, SignatureInvalid> {
    if signature.algorithm() != key.algorithm() {
        return Err(SignatureInvalid);
    }
    match key {
        KeyData::Ed25519(public) => {
            verify_ed25519(&public.0, data, signature.as_bytes())?;
            Ok(SignatureFlags { security_key: None })
        }
        KeyData::SkEd25519(public) => {
            let (signature, flags, counter) = split_security_key(signature.as_bytes())?;
            let signed = security_key_data(public.application(), flags, counter, data);
            verify_ed25519(&public.public_key().0, &signed, signature)?;
            Ok(SignatureFlags {
                security_key: Some(flags),
            })
        }
        KeyData::SkEcdsaSha2NistP256(_) => {
            let (_, flags, _) = split_security_key(signature.as_bytes())?;
            signature::Verifier::verify(key, data, signature).map_err(|_| SignatureInvalid)?;
            Ok(SignatureFlags {
                security_key: Some(flags),
            })
        }
        KeyData::Ecdsa(_) => {
            signature::Verifier::verify(key, data, signature).map_err(|_| SignatureInvalid)?;
            Ok(SignatureFlags { security_key: None })
        }
        _ => Err(SignatureInvalid),
    }
}

fn verify_ed25519(
    public: &[u8; 32],
    data: &[u8],
    signature: &[u8],
) -> Result<(), SignatureInvalid> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| SignatureInvalid)?;
    if key.is_weak() {
        return Err(SignatureInvalid);
    }
    let signature = Ed25519Signature::from_slice(signature).map_err(|_| SignatureInvalid)?;
    key.verify_strict(data, &signature)
        .map_err(|_| SignatureInvalid)
}

/// A security key's signature as `ssh-key` holds it: the signature, then
/// the flags byte and the big-endian counter.
fn split_security_key(bytes: &[u8]) -> Result<(&[u8], u8, [u8; 4]), SignatureInvalid> {
    let split = bytes.len().checked_sub(5).ok_or(SignatureInvalid)?;
    let (signature, trailer) = bytes.split_at(split);
    let counter = trailer[1..].try_into().map_err(|_| SignatureInvalid)?;
    Ok((signature, trailer[0], counter))
}

/// What a FIDO authenticator signs for OpenSSH: the application's hash, the
/// flags, the counter and the message's hash (`PROTOCOL.u2f`).
pub fn security_key_data(
    application: &str,
    flags: u8,
    counter: [u8; 4],
    message: &[u8],
) -> Vec<u8> {
    let mut data = Vec::with_capacity(32 + 1 + 4 + 32);
    data.extend_from_slice(&Sha256::digest(application.as_bytes()));
    data.push(flags);
    data.extend_from_slice(&counter);
    data.extend_from_slice(&Sha256::digest(message));
    data
}
