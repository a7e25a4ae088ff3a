//! `deployd check-config`: 0 and a summary for a valid config, 2 and the
//! reason for a bad one, without starting anything. SSH deploy keys and CAs
//! included: a CA without principals, a key type deployd does not verify or
//! principals on a plain key are refused in one line.

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

/// Public key lines made once with `ssh-keygen`.
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyr5DXwzq2VGuNi1nv8begVccuVaOkSWDGTGWc4Y1O alice@kelyus";
const SSH_CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA/GeuAVmLaOJHJHVZhOVP6qI0WgLxOPZ371l2vTxSAL fleet-ca";
const RSA_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDMwa45Vw3uR9m73PgQpeIDTVsqARuOFAcEJ3V5uudCSwxpcuxehZsSB54v4DW+rWKSBPnvWcEKJGp7FEBpvEsmHD8pdsmxiCWe8iX7zxrICWe33Bp0ayNJgkU3pRwgfbwSRgRGpCLmVa5ytc0axZT0R6rDTxG7jvUcJKURbGDGTJd5GEPvy0tpFQEBl2fRCd/ywsK415FaDTWH+nVcXGRbDGyoseZt8yXhkuxgSy0F0pKZ/etOm37FYEKNUHMIEkrT5eHz/IshWFcwZztYP9bLo0mZgI71IIBGQxPhfBniXcUoCnbV2mJlAS3Wi9L4kK8AkH8UqWeuS9qlVIMk4NvB carol@kelyus";

/// A config whose `[[trusted_keys]]` is `entry`.
fn with_trusted_key(entry: &str) -> String {
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    format!(
        "hostname = \"sambirano\"\n[[trusted_keys]]\n{entry}\n[nix]\nsubstituters = [\"http://kelyus:5000\"]\ntrusted_public_keys = [\"{}\"]\n",
        cache.public_key()
    )
}

#[test]
fn ssh_keys_and_cas() {
    let (code, stderr) = check(&with_trusted_key(&format!(
        "ssh = {SSH_KEY:?}\n[[trusted_keys]]\nssh_ca = {SSH_CA:?}\nprincipals = [\"deployer\", \"deployer@sambirano\"]\nmay = [\"deploy\", \"read\"]"
    )));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("host sambirano, 2 trusted keys"),
        "{stderr}"
    );

    for (entry, reason) in [
        (
            format!("ssh_ca = {SSH_CA:?}"),
            "trusted key 1 (ssh_ca): an SSH CA needs at least one principal",
        ),
        (
            format!("ssh = {RSA_KEY:?}"),
            "trusted key 1 (ssh): SSH key type ssh-rsa is not accepted",
        ),
        (
            "ssh = \"ssh-ed25519 AAAA alice\"".to_owned(),
            "trusted key 1 (ssh): not an OpenSSH public key",
        ),
        (
            format!("ssh = {SSH_KEY:?}\nprincipals = [\"deployer\"]"),
            "trusted key 1: principals are only for an ssh_ca entry",
        ),
        (
            format!("ssh = {SSH_KEY:?}\nssh_ca = {SSH_CA:?}\nprincipals = [\"deployer\"]"),
            "trusted key 1: give exactly one of key, key_file, ssh, ssh_file and ssh_ca",
        ),
    ] {
        let (code, stderr) = check(&with_trusted_key(&entry));
        assert_eq!(code, Some(2), "{entry}: {stderr}");
        assert!(stderr.starts_with("deployd: "), "{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }

    // Unknown fields: the parser names the field and shows the line.
    let (code, stderr) = check(&with_trusted_key(&format!(
        "ssh_ca = {SSH_CA:?}\nprincipal = [\"deployer\"]"
    )));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `principal`"), "{stderr}");
}
