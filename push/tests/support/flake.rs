//! A fleet's flake for process tests: a git repository with a tiny flake
//! without inputs (real Nix evaluates it offline), a push.toml and a deploy
//! key.

use std::path::Path;
use std::process::Command;

use deployd_protocol::SecretKey;

use super::fake_host::HOST;

/// Runs `git ARGS` in `dir` as a test user, failing the test if it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .status()
        .expect("git");
    assert!(status.success());
}

/// A flake in a git repository whose configurations are `isalo` and
/// `toliara` (names only: push reads the names without evaluating a
/// system), a push.toml naming [`HOST`] at `port` on 127.0.0.1, and its
/// deploy key.
pub fn flake(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(
        dir.path().join("flake.nix"),
        "{ outputs = { self }: { nixosConfigurations = { isalo = { }; toliara = { }; }; }; }\n",
    )
    .expect("flake");
    git(dir.path(), &["add", "flake.nix"]);
    git(dir.path(), &["commit", "-q", "-m", "flake"]);
    std::fs::write(
        dir.path().join("push.toml"),
        format!(
            "[defaults]\nkey_file = \"ops.secret\"\n[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {port}\n"
        ),
    )
    .expect("inventory");
    let key = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    std::fs::write(
        dir.path().join("ops.secret"),
        key.to_key_file_text().as_bytes(),
    )
    .expect("key");
    dir
}
