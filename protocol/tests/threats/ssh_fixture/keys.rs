//! Keys that sign: plain SSH keys, a software FIDO authenticator, and
//! certificates a CA issues for them; the OpenSSH lines a host trusts them by.

use deployd_protocol::ssh::{TrustedSshCa, TrustedSshKey};
use deployd_protocol::Permissions;
use sha2::{Digest, Sha256};
use signature::Signer;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::public::{EcdsaPublicKey, KeyData, SkEcdsaSha2NistP256, SkEd25519};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, PrivateKey, PublicKey, Signature, SigningKey};

use super::NOW;

/// A FIDO authenticator's flag: the user touched the key.
pub const USER_PRESENT: u8 = 0x01;
/// A FIDO authenticator's flag: the user gave a PIN or a fingerprint.
pub const USER_VERIFIED: u8 = 0x04;
/// The FIDO application OpenSSH uses unless told otherwise.
pub const APPLICATION: &str = "ssh:";

/// A fresh ssh-ed25519 key.
pub fn ed25519_key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("random ed25519 key")
}

/// A fresh ecdsa-sha2-nistp256 key.
pub fn ecdsa_key() -> PrivateKey {
    let algorithm = Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    };
    PrivateKey::random(&mut OsRng, algorithm).expect("random P-256 key")
}

/// A software security key: what a FIDO authenticator holds and does, with
/// the flags byte and counter it reports chosen by the test.
pub struct Authenticator {
    /// The credential's key pair (ed25519 or P-256).
    credential: PrivateKey,
    /// The flags byte of every signature (`USER_PRESENT`, `USER_VERIFIED`).
    pub flags: u8,
    /// The signature counter it reports.
    pub counter: u32,
}

impl Authenticator {
    /// An `sk-ssh-ed25519@openssh.com` key that reports a touch.
    pub fn ed25519() -> Authenticator {
        Authenticator {
            credential: ed25519_key(),
            flags: USER_PRESENT,
            counter: 7,
        }
    }

    /// An `sk-ecdsa-sha2-nistp256@openssh.com` key that reports a touch.
    pub fn ecdsa() -> Authenticator {
        Authenticator {
            credential: ecdsa_key(),
            flags: USER_PRESENT,
            counter: 7,
        }
    }

    /// The public key as OpenSSH records it: the credential's key and the
    /// application.
    pub fn public_key(&self) -> KeyData {
        match self.credential.public_key().key_data() {
            KeyData::Ed25519(key) => KeyData::SkEd25519(SkEd25519::new(*key, APPLICATION)),
            KeyData::Ecdsa(EcdsaPublicKey::NistP256(point)) => {
                KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(*point, APPLICATION))
            }
            other => unreachable!("no security key of type {}", other.algorithm()),
        }
    }

    /// Signs `message` as the authenticator does for OpenSSH: over
    /// `sha256(application) || flags || counter (big-endian) ||
    /// sha256(message)`, the flags and counter appended to the signature.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut authenticator_data = Sha256::digest(APPLICATION).to_vec();
        authenticator_data.push(self.flags);
        authenticator_data.extend_from_slice(&self.counter.to_be_bytes());
        authenticator_data.extend_from_slice(&Sha256::digest(message));
        let raw = raw_signature(&self.credential, &authenticator_data);
        let mut bytes = raw.as_bytes().to_vec();
        bytes.push(self.flags);
        bytes.extend_from_slice(&self.counter.to_be_bytes());
        Signature::new(self.public_key().algorithm(), bytes).expect("security key signature")
    }
}

/// `key`'s signature over `data` (`PrivateKey::sign` is SSHSIG's, whole).
fn raw_signature(key: &PrivateKey, data: &[u8]) -> Signature {
    Signer::<Signature>::try_sign(key, data).expect("the key signs")
}

/// A CA on a security key signs certificates as it signs anything else.
impl Signer<Signature> for Authenticator {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        Ok(self.sign(message))
    }
}

impl From<&Authenticator> for KeyData {
    fn from(authenticator: &Authenticator) -> KeyData {
        authenticator.public_key()
    }
}

/// A key that signs: a plain SSH key or a security key.
pub enum SshKey {
    /// ssh-ed25519 or ecdsa-sha2-nistp256.
    Plain(PrivateKey),
    /// A software FIDO authenticator.
    Security(Authenticator),
}

impl SshKey {
    /// Its public key.
    pub fn public_key(&self) -> KeyData {
        match self {
            SshKey::Plain(key) => key.public_key().key_data().clone(),
            SshKey::Security(authenticator) => authenticator.public_key(),
        }
    }

    /// Signs `data` (an SSHSIG's signed data).
    pub fn sign(&self, data: &[u8]) -> Signature {
        match self {
            SshKey::Plain(key) => raw_signature(key, data),
            SshKey::Security(authenticator) => authenticator.sign(data),
        }
    }
}

/// What a certificate says, short of its key and CA.
pub struct CertificateSpec<'a> {
    /// Its principals; empty means "valid for any principal".
    pub principals: &'a [&'a str],
    /// Unix seconds from which it is valid.
    pub valid_after: u64,
    /// Unix seconds from which it is no longer valid.
    pub valid_before: u64,
    /// User or host.
    pub cert_type: CertType,
    /// Critical options, name and data.
    pub critical_options: &'a [(&'a str, &'a str)],
}

impl Default for CertificateSpec<'_> {
    /// A user certificate for `deployer`, valid from 5 minutes ago for an hour.
    fn default() -> Self {
        CertificateSpec {
            principals: &["deployer"],
            valid_after: NOW - 300,
            valid_before: NOW + 3600,
            cert_type: CertType::User,
            critical_options: &[],
        }
    }
}

/// A certificate for `subject`, signed by `ca`.
pub fn issue(ca: &impl SigningKey, subject: &KeyData, spec: &CertificateSpec<'_>) -> Certificate {
    let mut builder = Builder::new_with_random_nonce(
        &mut OsRng,
        subject.clone(),
        spec.valid_after,
        spec.valid_before,
    )
    .expect("certificate window");
    builder.cert_type(spec.cert_type).expect("type");
    builder.key_id("alice@kelyus").expect("key id");
    if spec.principals.is_empty() {
        builder.all_principals_valid().expect("no principal");
    }
    for principal in spec.principals {
        builder.valid_principal(*principal).expect("principal");
    }
    for (name, data) in spec.critical_options {
        builder.critical_option(*name, *data).expect("option");
    }
    builder.sign(ca).expect("the CA signs")
}

/// A trusted key line `options key-type base64 comment`, as in config.
pub fn trust_key(key: &KeyData, options: &str, may: Permissions) -> TrustedSshKey {
    let line = format!("{options} {}", openssh_line(key));
    TrustedSshKey::parse(line.trim(), may).expect("trusted key line")
}

/// A trusted CA (its public key) accepting `principals`.
pub fn trust_ca(ca: &KeyData, principals: &[&str], may: Permissions) -> TrustedSshCa {
    let principals = principals.iter().map(|p| p.to_string()).collect();
    TrustedSshCa::parse(&openssh_line(ca), principals, may).expect("trusted CA line")
}

/// A public key as one OpenSSH line.
pub fn openssh_line(key: &KeyData) -> String {
    PublicKey::new(key.clone(), "alice@kelyus")
        .to_openssh()
        .expect("OpenSSH line")
}
