//! What push sends is what `PROTOCOL.sshsig` lays out: the SSHSIG blob
//! `encode_sshsig` makes from an agent's signature is byte for byte the one
//! built field by field from the specification (`ssh_fixture`), for every
//! key type deployd accepts, bare or certified, and it verifies.

use deployd_protocol::pre_authentication_encoding;
use deployd_protocol::ssh::{encode_sshsig, signed_data, SshSigner, Sshsig};
use deployd_protocol::PAYLOAD_TYPE;

// Each test binary uses part of the shared fixture.
#[allow(dead_code, unused_imports)]
#[path = "threats/ssh_fixture/mod.rs"]
mod ssh_fixture;

use ssh_fixture::{
    ecdsa_key, ed25519_key, signature_blob, sshsig_blob, Authenticator, CertificateSpec,
    SshIdentity, SshsigFields, USER_PRESENT,
};

fn identities() -> Vec<(&'static str, SshIdentity)> {
    let ca = ed25519_key();
    let certified = SshIdentity::plain(ed25519_key()).certified(&ca, &CertificateSpec::default());
    let certified_security =
        SshIdentity::security(Authenticator::ecdsa()).certified(&ca, &CertificateSpec::default());
    vec![
        ("ssh-ed25519", SshIdentity::plain(ed25519_key())),
        ("ecdsa-sha2-nistp256", SshIdentity::plain(ecdsa_key())),
        (
            "sk-ssh-ed25519",
            SshIdentity::security(Authenticator::ed25519()),
        ),
        (
            "sk-ecdsa-sha2-nistp256",
            SshIdentity::security(Authenticator::ecdsa()),
        ),
        ("ssh-ed25519 certificate", certified),
        ("sk-ecdsa-sha2-nistp256 certificate", certified_security),
    ]
}

fn signer_of(identity: &SshIdentity) -> SshSigner {
    match &identity.certificate {
        Some(certificate) => SshSigner::Certificate(Box::new(certificate.clone())),
        None => SshSigner::Key(identity.key.public_key()),
    }
}

#[test]
fn encode_sshsig_lays_out_the_specified_blob_for_every_key_type() {
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, br#"{"kind":"deploy"}"#);
    for (name, identity) in identities() {
        let signature = identity.key.sign(&signed_data(&[], &pae));
        let ours = encode_sshsig(&signer_of(&identity), &signature).expect("encodes");
        let specified = sshsig_blob(SshsigFields {
            public_key: &identity.public_blob(),
            namespace: "deployd",
            hash: "sha512",
            signature: &signature_blob(&signature),
        });
        assert_eq!(ours, specified, "{name}");
        let flags = Sshsig::parse(&ours)
            .unwrap_or_else(|error| panic!("{name}: {error}"))
            .verify(&pae)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(flags.user_present(), "{name}");
    }
}

#[test]
fn signed_data_is_what_openssh_signs() {
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, b"{}");
    let openssh = ssh_key::SshSig::signed_data("deployd", ssh_key::HashAlg::Sha512, &pae)
        .expect("signed data");
    assert_eq!(signed_data(&[], &pae), openssh);
    assert_eq!(USER_PRESENT, 0x01);
}
