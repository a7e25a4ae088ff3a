//! Property: no single flipped byte of an SSHSIG blob is ever accepted, for
//! a plain ed25519 key trusted by its line and for a certificate from a
//! trusted CA. The envelope is decoded, one byte of its SSHSIG flipped, and
//! the envelope encoded again: every byte of the blob is covered by the
//! SSHSIG signature, the CA's signature, the keyid or the parser.

use std::sync::LazyLock;

use deployd_protocol::Permissions;
use proptest::prelude::*;
use proptest::sample::Index;
use ssh_key::public::KeyData;

// Each test binary uses part of the shared fixture.
#[allow(dead_code, unused_imports)]
#[path = "threats/ssh_fixture/mod.rs"]
mod ssh_fixture;

use ssh_fixture::{
    deploy_message, ed25519_key, key_host, trust_ca, with_edited_sshsig, CertificateSpec, SshHost,
    SshIdentity,
};

/// A signed deploy and what the host that takes it trusts, made once per
/// test binary: each case flips a byte of the same envelope.
struct Signed {
    bytes: Vec<u8>,
    trust: Trust,
}

enum Trust {
    /// The signing key, by its line.
    Key(KeyData),
    /// The CA that certified the signing key.
    Ca(KeyData),
}

impl Signed {
    fn new(identity: &SshIdentity, trust: Trust) -> Signed {
        let bytes = identity.envelope(&deploy_message("sambirano"));
        Signed { bytes, trust }
    }

    /// A fresh host (an empty nonce store) trusting the signer.
    fn host(&self) -> SshHost {
        match &self.trust {
            Trust::Key(key) => key_host("sambirano", key, "", Permissions::ALL),
            Trust::Ca(ca) => {
                let trusted = trust_ca(ca, &["deployer"], Permissions::ALL);
                SshHost::new("sambirano", vec![], vec![trusted])
            }
        }
    }
}

static PLAIN_KEY: LazyLock<Signed> = LazyLock::new(|| {
    let identity = SshIdentity::plain(ed25519_key());
    Signed::new(&identity, Trust::Key(identity.key.public_key()))
});

static CERTIFIED: LazyLock<Signed> = LazyLock::new(|| {
    let ca = ed25519_key();
    let identity = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    Signed::new(&identity, Trust::Ca(ca.public_key().key_data().clone()))
});

/// The flipped copy of `signed` is refused as a bad signature or an
/// unknown key, and records nothing.
fn flipped_is_refused(signed: &Signed, index: Index, mask: u8) -> Result<(), TestCaseError> {
    let mut host = signed.host();
    let flipped = with_edited_sshsig(&signed.bytes, |blob| {
        let at = index.index(blob.len());
        blob[at] ^= mask;
    });
    let error = host
        .verify_deploy(&flipped)
        .expect_err("a flipped SSHSIG byte was accepted");
    let code = error.code().as_str();
    prop_assert!(
        code == "bad_signature" || code == "unknown_key",
        "{}",
        error.message()
    );
    prop_assert!(host.nonces.is_empty());
    Ok(())
}

#[test]
fn the_unflipped_envelopes_are_accepted() {
    for signed in [&*PLAIN_KEY, &*CERTIFIED] {
        signed
            .host()
            .verify_deploy(&signed.bytes)
            .expect("the envelope every case flips");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_flipped_byte_of_a_plain_key_sshsig_is_never_accepted(
        index in any::<Index>(),
        mask in 1u8..=255,
    ) {
        flipped_is_refused(&PLAIN_KEY, index, mask)?;
    }

    #[test]
    fn a_flipped_byte_of_a_certificate_sshsig_is_never_accepted(
        index in any::<Index>(),
        mask in 1u8..=255,
    ) {
        flipped_is_refused(&CERTIFIED, index, mask)?;
    }
}
