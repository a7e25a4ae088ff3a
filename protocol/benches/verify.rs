//! The cost of the whole check of a deploy request against the cost of the
//! one Ed25519 `verify_strict` inside it.
//!
//! `bare_verify_strict` verifies the same signature over the same
//! pre-authentication bytes with an already-parsed key and signature;
//! `whole_verification` takes the envelope's JSON bytes through every step
//! (size, JSON, base64, signature, payload parsing, kind, host, window, nonce,
//! store path, downgrade, nonce recording). `scripts/bench-ratio` prints the
//! ratio of the two.

// criterion's macros define undocumented items of their own.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use deployd_protocol::{
    Action, Arrival, DeployRequest, Endpoint, Envelope, FixedClock, MemoryNonceStore, Message,
    Permissions, Request, SecretKey, TrustedKey, TrustedKeys, Verifier,
};

const NOW: u64 = 1_800_000_000;

fn deploy_envelope(key: &SecretKey) -> Vec<u8> {
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
    message.sign(&[key]).to_json()
}

fn verification(c: &mut Criterion) {
    let key = SecretKey::generate("ops-1".parse().expect("name")).expect("random source");
    let bytes = deploy_envelope(&key);
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
    let arrival = Arrival {
        endpoint: Endpoint::Deploy,
        active_issued_at: Some(NOW - 3600),
    };

    let envelope = Envelope::parse(&bytes).expect("envelope");
    let pae = envelope.pre_authentication_encoding();
    let signature = envelope.signatures()[0].sig;
    let public = key.public_key();
    let verifying_key = public.verifying_key();

    let mut group = c.benchmark_group("deploy_request");
    group.bench_function("bare_verify_strict", |b| {
        b.iter(|| {
            verifying_key
                .verify_strict(black_box(&pae), black_box(&signature))
                .expect("valid signature")
        })
    });
    group.bench_function("whole_verification", |b| {
        b.iter_batched_ref(
            MemoryNonceStore::default,
            |nonces| {
                verifier
                    .verify(black_box(&bytes), &arrival, nonces)
                    .expect("valid request")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
