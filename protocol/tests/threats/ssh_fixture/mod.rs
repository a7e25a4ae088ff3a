//! SSH deploy keys made in Rust: plain keys, certificates from a CA, and a
//! software FIDO authenticator that signs exactly as a security key does
//! (`keys`); SSHSIG blobs laid out by hand from `PROTOCOL.sshsig` and
//! `PROTOCOL.u2f`, so the verifier is checked against the specification,
//! not against its own encoder (`sshsig`); and hosts that trust them, with
//! the messages they are sent (`host`). Shared by the threat tests, the
//! SSHSIG property and encoding tests and the OpenSSH interop tests, each of
//! which uses part of it.

mod host;
mod keys;
mod sshsig;

pub use host::*;
pub use keys::*;
pub use sshsig::*;

/// The SSH hosts' clock reading (the same instant as `fixture::NOW`).
pub const NOW: u64 = 1_800_000_000;
/// A well-formed system path.
pub const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-24.05";
