//! Deploy keys operators already have: SSH keys (held by `ssh-agent`,
//! FIDO security keys among them) and SSH certificates from a CA the host
//! trusts. Their signatures are SSHSIG over the same PAE bytes a Nix-format
//! key signs; a DSSE entry names such a signature by the key's `SHA256:`
//! fingerprint.

mod certificate;
mod sshsig;

use ssh_key::authorized_keys::Entry;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey as SshPublicKey};

pub use certificate::{CertificateRefusal, VERIFY_REQUIRED};
pub use sshsig::{
    encode_sshsig, security_key_data, signed_data, SignatureFlags, SignatureInvalid, SshSigner,
    Sshsig, SshsigError, MAX_SSHSIG_BYTES, SSHSIG_HASH, SSHSIG_NAMESPACE,
};

use crate::error::RejectError;
use crate::kinds::Permissions;
use crate::names::KeyName;

/// `authorized_keys` options deployd knows for a trusted SSH key.
const NO_TOUCH_REQUIRED: &str = "no-touch-required";

/// Why an SSH key or CA from a config cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum SshKeyError {
    /// Not an OpenSSH public key line.
    #[error("not an OpenSSH public key: {0}")]
    Parse(String),
    /// A type deployd does not verify.
    #[error(transparent)]
    KeyType(#[from] SshsigError),
    /// An `authorized_keys` option deployd does not know.
    #[error("option {0} is not known here (deployd knows no-touch-required and verify-required)")]
    UnknownOption(String),
    /// `cert-authority` belongs in `ssh_ca`.
    #[error("cert-authority keys are trusted with ssh_ca = ..., not ssh = ...")]
    CertAuthorityOption,
    /// An Ed25519 key of small order would accept forged signatures.
    #[error("weak Ed25519 key (small order): it would accept forged signatures")]
    WeakKey,
    /// A CA that accepts no principal would accept no certificate.
    #[error("an SSH CA needs at least one principal")]
    NoPrincipals,
    /// A principal that is empty or holds a comma or control character.
    #[error("principal {0} is empty or holds a comma or control character")]
    BadPrincipal(String),
}

/// The SHA-256 fingerprint of an SSH key, as OpenSSH prints it.
pub fn fingerprint(key: &KeyData) -> KeyName {
    key.fingerprint(HashAlg::Sha256)
        .to_string()
        .parse()
        .unwrap_or_else(|_| unreachable!("OpenSSH fingerprints are valid key names"))
}

/// A key type deployd verifies, and no weak Ed25519 key.
fn check_trustworthy(key: &KeyData) -> Result<(), SshKeyError> {
    sshsig::check_key_type(key)?;
    let ed25519 = match key {
        KeyData::Ed25519(public) => Some(public.0),
        KeyData::SkEd25519(public) => Some(public.public_key().0),
        _ => None,
    };
    if let Some(bytes) = ed25519 {
        let weak =
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_or(true, |key| key.is_weak());
        if weak {
            return Err(SshKeyError::WeakKey);
        }
    }
    Ok(())
}

/// One trusted SSH key (`ssh = "<authorized_keys line>"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSshKey {
    key: KeyData,
    fingerprint: KeyName,
    no_touch_required: bool,
    verify_required: bool,
    /// What its signatures may do.
    pub may: Permissions,
}

impl TrustedSshKey {
    /// Parses an `authorized_keys` line: options (`no-touch-required`,
    /// `verify-required`), key type, base64, comment.
    pub fn parse(line: &str, may: Permissions) -> Result<TrustedSshKey, SshKeyError> {
        let entry: Entry = line
            .trim()
            .parse()
            .map_err(|error: ssh_key::Error| SshKeyError::Parse(error.to_string()))?;
        let (mut no_touch_required, mut verify_required) = (false, false);
        for option in entry.config_opts().iter() {
            match option {
                NO_TOUCH_REQUIRED => no_touch_required = true,
                VERIFY_REQUIRED => verify_required = true,
                "cert-authority" => return Err(SshKeyError::CertAuthorityOption),
                other => return Err(SshKeyError::UnknownOption(crate::names::quote(other))),
            }
        }
        let key = entry.public_key().key_data().clone();
        check_trustworthy(&key)?;
        Ok(TrustedSshKey {
            fingerprint: fingerprint(&key),
            key,
            no_touch_required,
            verify_required,
            may,
        })
    }

    /// The key's fingerprint, the `keyid` of its signatures.
    pub fn fingerprint(&self) -> &KeyName {
        &self.fingerprint
    }
}

/// A trusted SSH certificate authority (`ssh_ca = "..."`, `principals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSshCa {
    key: KeyData,
    fingerprint: KeyName,
    principals: Vec<String>,
    /// What signatures by the keys it certified may do.
    pub may: Permissions,
}

impl TrustedSshCa {
    /// Parses the CA's public key line and its accepted principals.
    pub fn parse(
        line: &str,
        principals: Vec<String>,
        may: Permissions,
    ) -> Result<TrustedSshCa, SshKeyError> {
        let key = SshPublicKey::from_openssh(line.trim())
            .map_err(|error| SshKeyError::Parse(error.to_string()))?
            .key_data()
            .clone();
        check_trustworthy(&key)?;
        if principals.is_empty() {
            return Err(SshKeyError::NoPrincipals);
        }
        if let Some(bad) = principals
            .iter()
            .find(|p| p.is_empty() || p.contains(',') || p.chars().any(char::is_control))
        {
            return Err(SshKeyError::BadPrincipal(crate::names::quote(bad)));
        }
        Ok(TrustedSshCa {
            fingerprint: fingerprint(&key),
            key,
            principals,
            may,
        })
    }

    /// The CA key's fingerprint.
    pub fn fingerprint(&self) -> &KeyName {
        &self.fingerprint
    }

    /// The principals it accepts.
    pub fn principals(&self) -> &[String] {
        &self.principals
    }
}

/// A signature that verified, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signer {
    pub name: KeyName,
    pub may: Permissions,
}

/// What checking one SSH signature of an envelope found.
pub(crate) enum SignatureVerdict {
    /// It verifies and its key (or certificate) is trusted.
    Verified(Signer),
    /// Neither its key nor its certificate's CA is trusted here.
    NotTrusted,
    /// It is by a trusted key or CA, and refused.
    Refused(RejectError),
}

/// The trusted SSH keys and CAs of one host.
#[derive(Debug, Clone, Default)]
pub(crate) struct SshTrust {
    pub keys: Vec<TrustedSshKey>,
    pub cas: Vec<TrustedSshCa>,
}

impl SshTrust {
    /// Checks the SSH signature `sig` named `keyid` over `pae`, at `now`.
    pub fn verify(&self, keyid: &str, sig: &[u8], pae: &[u8], now: u64) -> SignatureVerdict {
        let sshsig = match Sshsig::parse(sig) {
            Ok(sshsig) => sshsig,
            Err(error) => return self.malformed(keyid, error),
        };
        let key_fingerprint = fingerprint(sshsig.signer.key());
        if key_fingerprint.as_str() != keyid {
            return self.malformed(
                keyid,
                SshsigError::Encoding(format!(
                    "the key in the signature is {key_fingerprint}, not the keyid"
                )),
            );
        }
        match &sshsig.signer {
            SshSigner::Key(key) => {
                let Some(trusted) = self.keys.iter().find(|trusted| &trusted.key == key) else {
                    return SignatureVerdict::NotTrusted;
                };
                let Ok(flags) = sshsig.verify(pae) else {
                    return bad_signature(key_fingerprint);
                };
                if !trusted.no_touch_required && !flags.user_present() {
                    return refused(
                        key_fingerprint,
                        "the security key signed without a touch (user presence)",
                    );
                }
                if trusted.verify_required && !flags.user_verified() {
                    return refused(key_fingerprint, "the key requires user verification (verify-required), the signature was made without");
                }
                SignatureVerdict::Verified(Signer {
                    name: key_fingerprint,
                    may: trusted.may,
                })
            }
            SshSigner::Certificate(cert) => {
                let Some(ca) = self.cas.iter().find(|ca| &ca.key == cert.signature_key()) else {
                    return SignatureVerdict::NotTrusted;
                };
                // The CA was matched by its whole key above, so this checks
                // the certificate against a trusted CA, strictly.
                if sshsig.verify_certificate().is_err() {
                    return bad_signature(key_fingerprint);
                }
                let Ok(flags) = sshsig.verify(pae) else {
                    return bad_signature(key_fingerprint);
                };
                let demands = match certificate::check_certificate(cert, &ca.principals, now) {
                    Ok(demands) => demands,
                    Err(refusal) => {
                        return SignatureVerdict::Refused(RejectError::Certificate {
                            key: key_fingerprint,
                            refusal,
                        })
                    }
                };
                if !flags.user_present() {
                    return refused(
                        key_fingerprint,
                        "the security key signed without a touch (user presence)",
                    );
                }
                if demands.verify_required && !flags.user_verified() {
                    return SignatureVerdict::Refused(RejectError::Certificate {
                        key: key_fingerprint,
                        refusal: CertificateRefusal::VerificationRequired,
                    });
                }
                SignatureVerdict::Verified(Signer {
                    name: key_fingerprint,
                    may: ca.may,
                })
            }
        }
    }

    /// A signature that cannot be read: refused when its keyid names a
    /// trusted key, not trusted otherwise.
    fn malformed(&self, keyid: &str, error: SshsigError) -> SignatureVerdict {
        match self
            .keys
            .iter()
            .find(|key| key.fingerprint.as_str() == keyid)
        {
            Some(key) => SignatureVerdict::Refused(RejectError::SshSignature {
                key: key.fingerprint.clone(),
                source: error,
            }),
            None if self.cas.is_empty() => SignatureVerdict::NotTrusted,
            // Any certificate key could be certified by a trusted CA: the
            // blob was meant to be checked, and it is broken.
            None => SignatureVerdict::Refused(RejectError::SshSignature {
                key: keyid
                    .parse()
                    .unwrap_or_else(|_| unreachable!("only fingerprints reach the SSH verifier")),
                source: error,
            }),
        }
    }
}

fn bad_signature(key: KeyName) -> SignatureVerdict {
    SignatureVerdict::Refused(RejectError::BadSignature { key })
}

fn refused(key: KeyName, why: &'static str) -> SignatureVerdict {
    SignatureVerdict::Refused(RejectError::SshKeyRefused { key, why })
}
