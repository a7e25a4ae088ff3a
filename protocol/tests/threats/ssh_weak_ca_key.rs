//! Threat: a trusted CA line holding a weak (small-order) Ed25519 key, by
//! mistake or planted in a config review. Against such a key, a signature
//! of the identity point and a zero scalar verifies for every message under
//! the lax Ed25519 equation, so anyone could mint certificates. deployd
//! refuses such a key when the config is read, as a CA and as a key; and
//! it verifies a CA's signature as every Ed25519 signature, strictly, so a
//! certificate forged that way would not verify either.

use deployd_protocol::ssh::{SshKeyError, Sshsig, TrustedSshCa, TrustedSshKey};
use deployd_protocol::Permissions;
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{Algorithm, Signature};

use crate::ssh_fixture::{ed25519_key, openssh_line, CertificateSpec, SshIdentity};

/// The compressed identity point, of order 1.
const IDENTITY_POINT: [u8; 32] = {
    let mut point = [0u8; 32];
    point[0] = 1;
    point
};

/// A "CA" whose public key is the identity point: it signs anything with
/// R = identity, s = 0, no secret needed.
struct WeakCa;

impl signature::Signer<Signature> for WeakCa {
    fn try_sign(&self, _message: &[u8]) -> Result<Signature, signature::Error> {
        let mut forged = IDENTITY_POINT.to_vec();
        forged.extend_from_slice(&[0u8; 32]);
        Signature::new(Algorithm::Ed25519, forged).map_err(|_| signature::Error::new())
    }
}

impl From<&WeakCa> for KeyData {
    fn from(_: &WeakCa) -> KeyData {
        KeyData::Ed25519(Ed25519PublicKey(IDENTITY_POINT))
    }
}

#[test]
fn a_weak_key_is_refused_as_a_ca_and_as_a_key() {
    let line = openssh_line(&KeyData::from(&WeakCa));
    let as_ca = TrustedSshCa::parse(&line, vec!["deployer".into()], Permissions::ALL);
    assert!(matches!(as_ca, Err(SshKeyError::WeakKey)), "{as_ca:?}");
    let as_key = TrustedSshKey::parse(&line, Permissions::ALL);
    assert!(matches!(as_key, Err(SshKeyError::WeakKey)), "{as_key:?}");
}

#[test]
fn a_certificate_forged_for_a_weak_ca_key_does_not_verify() {
    let identity =
        SshIdentity::plain(ed25519_key()).certified(&WeakCa, &CertificateSpec::default());
    let blob = identity.sshsig(b"any message");
    let sshsig = Sshsig::parse(&blob).expect("well formed");
    assert!(sshsig.verify_certificate().is_err());
}
