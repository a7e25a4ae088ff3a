//! The time the whole check of a deploy request takes against the one
//! Ed25519 `verify_strict` inside it.
//!
//! `bare_verify_strict` verifies the same signature over the same
//! pre-authentication bytes with an already-parsed key and signature;
//! `whole_verification` takes the envelope's JSON bytes through every step
//! (size, JSON, base64, signature, payload parsing, kind, host, window, nonce,
//! store path, downgrade, nonce recording); `whole_verification_ssh_certificate`
//! does the same for the request signed with an SSH certificate (SSHSIG
//! parsing, the CA's signature, the certificate's checks, the SSHSIG's
//! signature). `scripts/bench-ratio` prints the ratio of each whole check to
//! the bare one, in time and in instructions.

// criterion's macros define undocumented items of their own.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use deployd_protocol::MemoryNonceStore;

mod setup;

fn verification(c: &mut Criterion) {
    let case = setup::case();
    let mut group = c.benchmark_group("deploy_request");
    group.bench_function("bare_verify_strict", |b| {
        b.iter(|| {
            case.verifying_key
                .verify_strict(black_box(&case.pae), black_box(&case.signature))
                .expect("valid signature")
        })
    });
    group.bench_function("whole_verification", |b| {
        b.iter_batched_ref(
            MemoryNonceStore::default,
            |nonces| {
                case.verifier
                    .verify(black_box(&case.bytes), &case.arrival, nonces)
                    .expect("valid request")
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("whole_verification_ssh_certificate", |b| {
        b.iter_batched_ref(
            MemoryNonceStore::default,
            |nonces| {
                case.ssh_certificate
                    .verifier
                    .verify(
                        black_box(&case.ssh_certificate.bytes),
                        &case.arrival,
                        nonces,
                    )
                    .expect("valid request")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
