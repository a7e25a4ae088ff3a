//! `deployd check-config`: 0 and a summary for a valid config, 2 and the
//! reason for a bad one, without starting anything.

use std::process::Command;

use deployd_protocol::SecretKey;

fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run deployd");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn valid_and_invalid_configs() {
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    let valid = format!(
        "hostname = \"sambirano\"\n[[trusted_keys]]\nkey = \"{}\"\n[nix]\nsubstituters = [\"http://kelyus:5000\"]\ntrusted_public_keys = [\"{}\"]\n",
        ops.public_key(),
        cache.public_key()
    );
    let (code, stderr) = check(&valid);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("host sambirano, 1 trusted keys"),
        "{stderr}"
    );

    let (code, stderr) = check(&valid.replace("trusted_keys]]\nkey", "trusted_keys]]\nkey_file"));
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = check(&format!("listen = \"nowhere\"\n{valid}"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("listen"), "{stderr}");
    let (code, stderr) = check(&valid.replace("http://kelyus:5000", "kelyus"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a store URL"), "{stderr}");
    let (code, stderr) = check(&format!(
        "{valid}[health]\nhttp = [\"https://localhost/\"]\n"
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"https://localhost/\" is not an http://host[:port]/path URL"),
        "{stderr}"
    );
    let (code, stderr) = check(&format!(
        "{valid}[health]\nhttp = [\"http://localhost:8080/up\"]\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
}
