//! Helpers for tests that run the real `push` binary and real Nix.

#![allow(dead_code)]

pub mod fake_host;
pub mod flake;
pub mod fleet;

use std::path::Path;
use std::process::{Command, Output};

/// The `push` binary cargo built for these tests.
pub fn push() -> Command {
    Command::new(env!("CARGO_BIN_EXE_push"))
}

/// Runs `command`, failing the test with its stderr if it does not succeed.
#[track_caller]
pub fn run_ok(command: &mut Command) -> Output {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `command` and returns what it did; a missing program fails the test
/// with a clear message (`.ci/run` installs Nix).
#[track_caller]
pub fn run(command: &mut Command) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run {command:?}: {error} (these tests need Nix: apt-get install nix-bin)"
        ),
    }
}

/// A `nix` command with the flags these tests need on Nix 2.8 and later: the
/// `nix-command` feature and no substituter (there is no network).
pub fn nix(args: &[&str]) -> Command {
    let mut command = Command::new("nix");
    command
        .args(["--extra-experimental-features", "nix-command"])
        .args(["--option", "substituters", ""])
        .args(args);
    command
}

/// Builds a tiny input-addressed path unique to this call, so no signature
/// from an earlier run is on it.
pub fn build_unique_path(dir: &Path) -> String {
    let token = deployd_protocol::Nonce::generate().expect("random source");
    let expression = dir.join("unique.nix");
    std::fs::write(
        &expression,
        format!(
            r#"derivation {{
  name = "deployd-interop";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo {token} > $out" ];
}}"#
        ),
    )
    .expect("write expression");
    let output = run_ok(Command::new("nix-build").arg(&expression).args([
        "--no-out-link",
        "--option",
        "substituters",
        "",
    ]));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The cell of `column` in `host`'s row of a table push printed: the word
/// that starts where the column's header starts (columns are left-aligned,
/// and a header may be two words, such as LAST DEPLOY).
#[track_caller]
pub fn table_cell(table: &str, host: &str, column: &str) -> String {
    let header = table.lines().next().expect("a header line");
    let start = header
        .find(column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    let row = table
        .lines()
        .find(|line| line.starts_with(host))
        .unwrap_or_else(|| panic!("no row for {host} in:\n{table}"));
    row.get(start..)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}
