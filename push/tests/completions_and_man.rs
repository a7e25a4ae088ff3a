//! `push completions SHELL` prints a script for bash, zsh and fish that
//! knows push's subcommands and options (bash checks its syntax), and
//! `push man --out DIR` writes one manual page per subcommand that man's
//! formatter reads without a warning. The Nix package installs both.

mod support;

use std::process::Command;

use support::{push, run, run_ok};

#[test]
fn completions_know_the_subcommands_and_options() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run_ok(push().args(["completions", shell]));
        let script = String::from_utf8(output.stdout).expect("UTF-8");
        for word in ["status", "rollback", "keygen", "--allow-downgrade", "json"] {
            let word = if shell == "fish" {
                word.trim_start_matches('-')
            } else {
                word
            };
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bash = dir.path().join("push.bash");
    std::fs::write(&bash, run_ok(push().args(["completions", "bash"])).stdout).expect("write");
    // bash is everywhere push's tests run: a missing one fails here.
    let parsed = run(Command::new("bash").arg("-n").arg(&bash));
    assert!(
        parsed.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let output = run(push().args(["completions", "tcsh"]));
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is bad usage"
    );
}

#[test]
fn one_manual_page_per_subcommand_in_valid_roff() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("man1");
    run_ok(push().args(["man", "--out"]).arg(&out));
    let mut pages: Vec<String> = std::fs::read_dir(&out)
        .expect("the pages")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "push-completions.1",
            "push-install.1",
            "push-keygen.1",
            "push-log.1",
            "push-man.1",
            "push-plan.1",
            "push-publish.1",
            "push-rollback.1",
            "push-serve.1",
            "push-status.1",
            "push.1",
        ]
    );
    for page in &pages {
        let path = out.join(page);
        let text = std::fs::read_to_string(&path).expect("page");
        let name = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name} 1")), "{page}: {text}");
        assert!(text.contains("Exit status: "), "{page}: no exit statuses");
        // groff (man's formatter) with warnings on: valid roff renders
        // without one.
        let rendered = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path));
        let warnings = String::from_utf8_lossy(&rendered.stderr);
        assert!(
            rendered.status.success() && warnings.trim().is_empty(),
            "{page}: {warnings}"
        );
    }
    let status = std::fs::read_to_string(out.join("push-status.1")).expect("page");
    assert!(status.contains("json"), "{status}");
}
