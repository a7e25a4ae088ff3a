//! Every config example in the README is a fixture under
//! `nixos-module/examples/` (marked `<!-- fixture: PATH -->` before its code
//! block), byte for byte, and every fixture is valid: daemon configs for
//! `deployd check-config`, the forge service's (`*-forge.toml`) for `push
//! serve --check`, inventories for `push`. So the docs cannot drift.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn binary(name: &str) -> PathBuf {
    deployd_lab::sibling_binary(Path::new(env!("CARGO_BIN_EXE_lab")), name).expect("built")
}

/// (fixture path, block content) for every marked block of the README.
fn marked_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- fixture: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a code block after the marker");
        let indent = fence.len() - fence.trim_start().len();
        assert!(
            fence.trim_start().starts_with("```"),
            "no code block after the marker for {path}"
        );
        let mut content = String::new();
        for line in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            content.push_str(line.get(indent..).unwrap_or(line.trim_start()));
            content.push('\n');
        }
        blocks.push((path.to_owned(), content));
    }
    blocks
}

#[test]
fn every_readme_example_is_a_valid_fixture() {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let blocks = marked_blocks(&readme);
    assert!(blocks.len() >= 7, "only {} marked examples", blocks.len());
    for (path, content) in &blocks {
        let fixture = root.join(path);
        let expected = std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            content, &expected,
            "the README's example differs from {path}"
        );
    }
    let examples = root.join("nixos-module/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".toml") {
            continue;
        }
        checked += 1;
        if name.starts_with("push") {
            // Valid inventories make `push status` try the hosts (exit 0 or
            // 1); an invalid one is exit 2.
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::copy(&path, dir.path().join("push.toml")).expect("copy");
            // The example's key file does not exist here; push reads its key
            // from DEPLOYD_KEY_FILE first.
            let key = deployd_protocol::SecretKey::generate("ops-1".parse().expect("name"))
                .expect("random");
            let key_file = dir.path().join("ops-1.secret");
            std::fs::write(&key_file, key.to_key_file_text().as_bytes()).expect("key");
            let output = Command::new(binary("push"))
                .env("DEPLOYD_KEY_FILE", &key_file)
                .args(["status", "--host", "sambirano", "--flake"])
                .arg(dir.path())
                .output()
                .expect("push");
            assert_ne!(
                output.status.code(),
                Some(2),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else if name.ends_with("-forge.toml") {
            // Its secret files are runtime files, absent here (as at build time).
            let output = Command::new(binary("push"))
                .args(["serve", "--check", "--skip-secret-files", "--config"])
                .arg(&path)
                .output()
                .expect("push");
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            let output = Command::new(binary("deployd"))
                .args(["check-config", "--skip-key-files", "--config"])
                .arg(&path)
                .output()
                .expect("deployd");
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert!(checked >= 5, "only {checked} fixtures checked");
}
