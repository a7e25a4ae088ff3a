//! Every config example marked `<!-- fixture: PATH -->` (just before its
//! code block) in the README or the book (`docs/src`) is that fixture under
//! `nixos-module/examples/`, byte for byte, and every fixture is valid:
//! daemon configs for `deployd check-config`, the forge service's
//! (`*-forge.toml`) for `push serve --check`, inventories for `push`. So the
//! docs cannot drift.

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

/// The README and every page of the book.
fn documents(root: &Path) -> Vec<PathBuf> {
    fn pages(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the book's folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pages(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                found.push(path);
            }
        }
    }
    let mut found = vec![root.join("README.md")];
    pages(&root.join("docs/src"), &mut found);
    found
}

/// (fixture path, block content) for every marked block of a document.
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
fn every_example_in_the_docs_is_a_valid_fixture() {
    let root = workspace();
    let mut blocks = Vec::new();
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("a document");
        let name = document.strip_prefix(&root).expect("in the workspace");
        for (path, content) in marked_blocks(&text) {
            blocks.push((name.display().to_string(), path, content));
        }
    }
    let shown: std::collections::BTreeSet<&str> =
        blocks.iter().map(|(_, path, _)| path.as_str()).collect();
    // The examples the docs show: the config with every key, five hosts
    // and what they render, the two inventories, the forge service's.
    assert!(
        shown.len() >= 13,
        "only {} fixtures shown: {shown:?}",
        shown.len()
    );
    for (document, path, content) in &blocks {
        let fixture = root.join(path);
        let expected = std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            content, &expected,
            "{document}'s example differs from {path}"
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
