//! For unit tests: git as a person runs it, in a repository of the test's own,
//! with an author and no signing (a machine's own git config stays out).

use std::path::Path;
use std::process::Command;

/// Runs `git ARGS` in `dir`; its trimmed standard output. Fails the test if git does.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
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
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
