//! The checks an OpenSSH user certificate (`PROTOCOL.certkeys`) must pass
//! before its key counts as a deploy key, once its CA's signature verified:
//! of type user, now inside its validity window, a principal this host
//! accepts, and no critical option deployd does not know.

use ssh_key::certificate::CertType;
use ssh_key::Certificate;

/// The one critical option deployd knows: the security key must have
/// verified its user (PIN or biometrics), not only seen a touch.
pub const VERIFY_REQUIRED: &str = "verify-required";

/// Why a certificate does not authorise a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    /// Now is at or after its `valid_before`.
    #[error("the certificate expired at {valid_before}, it is now {now}")]
    Expired {
        /// End of its validity.
        valid_before: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// Now is before its `valid_after`.
    #[error("the certificate is valid from {valid_after}, it is now {now}")]
    NotYetValid {
        /// Start of its validity.
        valid_after: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// A host certificate, not a user's.
    #[error("a host certificate cannot sign deploy requests, only a user certificate")]
    HostCertificate,
    /// No principal of the certificate is one this host accepts.
    #[error("the certificate's principals ({found}) include none this host accepts ({accepted})")]
    Principal {
        /// The certificate's principals, shortened.
        found: String,
        /// The CA's accepted principals.
        accepted: String,
    },
    /// A critical option deployd does not know must not be ignored.
    #[error("the certificate has the critical option {0}, which deployd does not know")]
    UnknownCriticalOption(String),
    /// The certificate asks for user verification the signature lacks.
    #[error("the certificate requires user verification (verify-required), the signature was made without")]
    VerificationRequired,
}

impl CertificateRefusal {
    /// The stable error code.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            CertificateRefusal::Expired { .. } => crate::ErrorCode::Expired,
            CertificateRefusal::NotYetValid { .. } => crate::ErrorCode::NotYetValid,
            _ => crate::ErrorCode::Forbidden,
        }
    }
}

/// What the policy checks conclude: the signature must have been made with
/// user verification, or a touch is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CertificateDemands {
    pub verify_required: bool,
}

/// Checks type, window, critical options and principals, in that order.
pub(crate) fn check_certificate(
    certificate: &Certificate,
    accepted_principals: &[String],
    now: u64,
) -> Result<CertificateDemands, CertificateRefusal> {
    if certificate.cert_type() != CertType::User {
        return Err(CertificateRefusal::HostCertificate);
    }
    // PROTOCOL.certkeys: valid when valid_after <= now < valid_before.
    if now < certificate.valid_after() {
        return Err(CertificateRefusal::NotYetValid {
            valid_after: certificate.valid_after(),
            now,
        });
    }
    if now >= certificate.valid_before() {
        return Err(CertificateRefusal::Expired {
            valid_before: certificate.valid_before(),
            now,
        });
    }
    let mut demands = CertificateDemands {
        verify_required: false,
    };
    for option in certificate.critical_options().keys() {
        match option.as_str() {
            VERIFY_REQUIRED => demands.verify_required = true,
            other => {
                return Err(CertificateRefusal::UnknownCriticalOption(
                    crate::names::quote(other),
                ))
            }
        }
    }
    // An empty list would mean "any principal" to some readers: refused,
    // as sshd refuses it for a user certificate.
    let principals = certificate.valid_principals();
    if !principals
        .iter()
        .any(|principal| accepted_principals.contains(principal))
    {
        return Err(CertificateRefusal::Principal {
            found: crate::names::quote(&principals.join(", ")),
            accepted: accepted_principals.join(", "),
        });
    }
    Ok(demands)
}
