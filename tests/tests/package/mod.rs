//! The harness of `package_builds_from_its_source_set.rs`: the flake's
//! packages read back with real Nix ([`declared`]), their source set copied
//! and their crates vendored as nixpkgs' `buildRustPackage` would have them
//! ([`source`]), and cargo run where, as in Nix's build sandbox, only the
//! declared native inputs can be seen ([`sandbox`]).

pub mod declared;
pub mod sandbox;
pub mod source;

use std::path::{Path, PathBuf};
use std::process::Command;

use deployd_lab::is_root;

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// Fails the test (never skips it) without root, which the sandbox's mount
/// namespace needs, or without Nix, which reads the package. CI has both.
pub fn require_root_and_nix() {
    assert!(
        is_root(),
        "the package's build sandbox needs root (a mount namespace); CI runs as root"
    );
    let nix = Command::new("nix-instantiate").arg("--version").output();
    assert!(
        nix.is_ok_and(|output| output.status.success()),
        "reading the package needs Nix (nix-instantiate); scripts/install-deps installs it"
    );
}

/// The last `bytes` bytes of `text`, for failure messages.
pub fn tail(text: &[u8], bytes: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let start = text.len().saturating_sub(bytes);
    let start = (start..text.len())
        .find(|&index| text.is_char_boundary(index))
        .unwrap_or(text.len());
    text[start..].to_owned()
}
