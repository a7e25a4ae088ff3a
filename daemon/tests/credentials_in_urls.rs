//! A config with credentials in a URL is refused, by `check-config` (at
//! build time, so `nixos-rebuild` fails) and by deployd's start, naming
//! where they go instead, and neither says the secret.

use std::process::Command;
use std::time::Duration;

use deployd_protocol::SecretKey;

/// A valid config with `substituter` as its cache and `extra` at the end.
fn config(substituter: &str, extra: &str, state_dir: &std::path::Path) -> String {
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    format!(
        "hostname = \"sambirano\"\nlisten = \"127.0.0.1:0\"\nstate_dir = {state_dir:?}\n[[trusted_keys]]\nkey = \"{}\"\n[nix]\nsubstituters = [\"{substituter}\"]\ntrusted_public_keys = [\"{}\"]\n{extra}",
        ops.public_key(),
        cache.public_key()
    )
}

/// Runs deployd with `args` and `--config` a file holding `text`; its exit
/// code and stderr.
fn deployd(args: &[&str], text: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run deployd");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("deployd started with a config it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_cache_password_is_refused_by_check_config_and_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let text = config("https://alice:s3cret@cache.example/nix", "", &state);
    for args in [&["check-config"][..], &[][..]] {
        let (code, stderr) = deployd(args, &text, dir.path());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            "deployd: [nix] substituters: \"https://alice:***@cache.example/nix\" has a password in it; credentials never go in a URL (logs, errors and statuses show it, and this file may be readable by all): give the URL without them and put them in Nix's netrc-file: a line \"machine cache.example login alice password PASSWORD\" in a file kept secret, named by netrc-file in nix.conf (on NixOS: nix.settings.netrc-file = \"/run/agenix/nix-netrc\")",
            "{args:?}"
        );
    }
    assert!(!state.exists(), "the refused daemon opened its state");

    let clean = config("https://cache.example/nix", "", &state);
    let (code, stderr) = deployd(&["check-config"], &clean, dir.path());
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_health_url_with_credentials_is_refused_without_showing_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config(
        "http://kelyus:5000",
        "[health]\nhttp = [\"http://monitor:s3cret@127.0.0.1:8080/up\"]\n",
        &dir.path().join("state"),
    );
    for args in [&["check-config"][..], &[][..]] {
        let (code, stderr) = deployd(args, &text, dir.path());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("\"http://monitor:***@127.0.0.1:8080/up\" has a user or password in it; a health check sends no credentials"),
            "{stderr}"
        );
        // The parser quotes the line it stopped at; that line is masked too.
        assert!(
            stderr.contains("http = [\"http://monitor:***@127.0.0.1:8080/up\"]"),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}
