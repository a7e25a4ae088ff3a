//! Runs one of the measured operations N times, for counting instructions
//! under `valgrind --tool=callgrind` (repeatable, unlike time on a busy
//! machine): `verify_cost bare|whole|ssh N` (`ssh`: the whole check of the
//! request signed with an SSH certificate). `scripts/bench-ratio` runs it.

use std::hint::black_box;
use std::process::ExitCode;

use deployd_protocol::MemoryNonceStore;

#[path = "../benches/setup/mod.rs"]
mod setup;

const USAGE: &str = "usage: verify_cost bare|whole|ssh N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(Ok(count))) = (args.get(1), args.get(2).map(|n| n.parse::<u32>()))
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let case = setup::case();
    for _ in 0..count {
        match which.as_str() {
            "bare" => case
                .verifying_key
                .verify_strict(black_box(&case.pae), black_box(&case.signature))
                .expect("valid signature"),
            "whole" => {
                let mut nonces = MemoryNonceStore::default();
                let verified = case
                    .verifier
                    .verify(black_box(&case.bytes), &case.arrival, &mut nonces)
                    .expect("valid request");
                black_box(verified);
            }
            "ssh" => {
                let mut nonces = MemoryNonceStore::default();
                let verified = case
                    .ssh_certificate
                    .verifier
                    .verify(
                        black_box(&case.ssh_certificate.bytes),
                        &case.arrival,
                        &mut nonces,
                    )
                    .expect("valid request");
                black_box(verified);
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
