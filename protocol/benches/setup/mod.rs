//! The deploy request both measurements verify: the criterion benchmark
//! (time) and the `verify_cost` example (instructions, under callgrind).

use deployd_protocol::{
    Action, Arrival, DeployRequest, Endpoint, Envelope, FixedClock, Message, Permissions, Request,
    SecretKey, SignatureValue, TrustedKey, TrustedKeys, Verifier,
};
use ed25519_dalek::{Signature, VerifyingKey};

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
        bytes,
        verifier,
        arrival: Arrival {
            endpoint: Endpoint::Deploy,
            active_issued_at: Some(NOW - 3600),
        },
    }
}
