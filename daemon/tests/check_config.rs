//! `deployd check-config`: 0 and a summary for a valid config, 2 and the
//! reason for a bad one, without starting anything. SSH deploy keys and CAs
//! included: a CA without principals, a key type deployd does not verify or
//! principals on a plain key are refused in one line. The `[tls]` pair must
//! load (at build time, `--skip-key-files`, only its paths are checked), and
//! health URLs may be `https://`, with a `ca_file` of certificates.

mod support;

use std::path::Path;
use std::process::Command;

use deployd_protocol::SecretKey;
use support::certificates::TestCa;

fn check(text: &str) -> (Option<i32>, String) {
    check_with(text, &[])
}

/// `deployd check-config` with `extra` arguments on `text`.
fn check_with(text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["check-config", "--config"])
        .arg(&path)
        .args(extra)
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
    let (code, stderr) = check(&format!("{valid}[health]\nhttp = [\"ftp://localhost/\"]\n"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"ftp://localhost/\" is not an http(s)://host[:port]/path URL"),
        "{stderr}"
    );
    let (code, stderr) = check(&format!(
        "{valid}[health]\nhttp = [\"https://localhost:8443/up\"]\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
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

#[test]
fn tls_pairs_and_ca_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "fleet-ca");
    let (host, other) = (
        ca.issue("host", "DNS:sambirano"),
        ca.issue("other", "DNS:other"),
    );
    let base = with_trusted_key(&format!(
        "key = \"{}\"",
        SecretKey::generate("ops-1".parse().expect("name"))
            .expect("random")
            .public_key()
    ));
    let tls = |cert: &Path, key: &Path| {
        format!(
            "{base}[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[health]\nhttp = [\"https://127.0.0.1:8443/up\"]\nca_file = \"{}\"\n",
            cert.display(),
            key.display(),
            ca.cert().display()
        )
    };
    let (code, stderr) = check(&tls(&host.cert, &host.key));
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stderr) = check(&tls(&host.cert, &other.key));
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "deployd: [tls]: key_file {} is not the private key of the certificate in cert_file {}",
            other.key.display(),
            host.cert.display()
        )
    );
    let missing = dir.path().join("not-yet.pem");
    let (code, stderr) = check(&tls(&missing, &host.key));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "deployd: [tls]: cannot read cert_file {}: No such file",
            missing.display()
        )),
        "{stderr}"
    );
    // At build time the secrets do not exist: absolute paths are enough.
    let (code, stderr) = check_with(&tls(&missing, &missing), &["--skip-key-files"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = check_with(&tls(Path::new("host.crt"), &missing), &["--skip-key-files"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "deployd: [tls] cert_file must be an absolute path, not \"host.crt\""
    );
}
