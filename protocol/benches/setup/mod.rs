//! The deploy request both measurements verify: the criterion benchmark
//! (time) and the `verify_cost` example (instructions, under callgrind).
//! It is signed twice: by a Nix-format key, and by an SSH certificate
//! (ed25519 key, ed25519 CA) as `ssh-keygen -Y sign` would sign it.

use deployd_protocol::ssh::{encode_sshsig, signed_data, SshSigner, TrustedSshCa};
use deployd_protocol::{
    Action, Arrival, DeployRequest, Endpoint, Envelope, EnvelopeSignature, FixedClock, Message,
    Permissions, Request, SecretKey, SignatureValue, TrustedKey, TrustedKeys, Verifier,
    PAYLOAD_TYPE,
};
use ed25519_dalek::{Signature, VerifyingKey};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, PrivateKey};

const NOW: u64 = 1_800_000_000;

/// A signed deploy request and everything needed to check it, both ways.
pub struct Case {
    /// The envelope's JSON, as received.
    pub bytes: Vec<u8>,
    /// A host's verifier trusting the signing key.
    pub verifier: Verifier,
    /// Where the request arrives, with an older active deploy.
    pub arrival: Arrival<'static>,
    /// The bytes the signature is over.
    pub pae: Vec<u8>,
    /// The signature, parsed.
    pub signature: Signature,
    /// The public key, parsed.
    pub verifying_key: VerifyingKey,
    /// The same request signed with an SSH certificate.
    pub ssh_certificate: SshCase,
}

/// A request signed with an SSH certificate, and a host trusting its CA.
pub struct SshCase {
    /// The envelope's JSON, as received: one SSHSIG carrying the certificate.
    pub bytes: Vec<u8>,
    /// A host's verifier trusting the CA for the certificate's principal.
    pub verifier: Verifier,
}

/// Builds the case with a fresh key.
pub fn case() -> Case {
    let key = SecretKey::generate("ops-1".parse().expect("name")).expect("random source");
    let mut request = DeployRequest::new(
        "sambirano-20261127-0001".parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-24.05"
            .parse()
            .expect("store path"),
        Action::Switch,
    )
    .expect("random source");
    request.flake = Some("git+ssh://git.example/fleet".into());
    request.rev = Some(
        "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("rev"),
    );
    let message = Message::new(
        "sambirano".parse().expect("host"),
        Request::Deploy(request),
        NOW,
        300,
    );
    let bytes = message.sign(&[&key]).to_json();
    let trusted = TrustedKeys::new([TrustedKey {
        key: key.public_key(),
        may: Permissions::ALL,
    }])
    .expect("one key");
    let verifier = Verifier::new(
        trusted,
        "sambirano".parse().expect("host"),
        Box::new(FixedClock::new(NOW)),
    );
    let envelope = Envelope::parse(&bytes).expect("envelope");
    Case {
        pae: envelope.pre_authentication_encoding(),
        signature: match envelope.signatures()[0].sig {
            SignatureValue::Ed25519(signature) => signature,
            SignatureValue::Sshsig(_) => unreachable!("signed by a Nix-format key"),
        },
        verifying_key: *key.public_key().verifying_key(),
        ssh_certificate: ssh_certificate_case(&message),
        bytes,
        verifier,
        arrival: Arrival {
            endpoint: Endpoint::Deploy,
            active_issued_at: Some(NOW - 3600),
        },
    }
}

/// `message` signed by an ed25519 key certified by an ed25519 CA, through
/// deployd's own SSHSIG encoding.
fn ssh_certificate_case(message: &Message) -> SshCase {
    let random_ed25519 =
        || PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("random source");
    let (ca, key) = (random_ed25519(), random_ed25519());
    let mut builder =
        Builder::new_with_random_nonce(&mut OsRng, key.public_key(), NOW - 300, NOW + 3600)
            .expect("validity");
    builder.cert_type(CertType::User).expect("user");
    builder.key_id("alice@kelyus").expect("key id");
    builder.valid_principal("deployer").expect("principal");
    let certificate = builder.sign(&ca).expect("the CA signs");

    let payload = message.to_payload_bytes();
    let pae = deployd_protocol::pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    let signature = signature::Signer::sign(&key, &signed_data(&[], &pae));
    let blob =
        encode_sshsig(&SshSigner::Certificate(Box::new(certificate)), &signature).expect("SSHSIG");
    let keyid = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    let envelope_signature = EnvelopeSignature {
        keyid,
        sig: SignatureValue::Sshsig(blob),
    };
    let bytes = Envelope::new(PAYLOAD_TYPE, payload, vec![envelope_signature]).to_json();

    let ca_line = ca.public_key().to_openssh().expect("CA line");
    let trusted_ca = TrustedSshCa::parse(&ca_line, vec!["deployer".into()], Permissions::ALL)
        .expect("trusted CA");
    let trusted = TrustedKeys::new([])
        .expect("no Nix key")
        .with_ssh([], [trusted_ca])
        .expect("one CA");
    SshCase {
        bytes,
        verifier: Verifier::new(
            trusted,
            "sambirano".parse().expect("host"),
            Box::new(FixedClock::new(NOW)),
        ),
    }
}
