//! `push keygen`: the key pair's files, their modes, and refusal to overwrite.

mod support;

use std::os::unix::fs::PermissionsExt;

use deployd_protocol::{PublicKey, SecretKey};
use support::{push, run, run_ok};

#[test]
fn writes_a_private_secret_and_its_public_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(push().args(["keygen", "ops-1", "--out"]).arg(dir.path()));
    let secret_path = dir.path().join("ops-1.secret");
    let public_path = dir.path().join("ops-1.public");
    let mode = std::fs::metadata(&secret_path)
        .expect("secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = SecretKey::load(&secret_path).expect("secret key file");
    let public = PublicKey::load(&public_path).expect("public key file");
    assert_eq!(secret.public_key(), public);
    assert_eq!(public.name().as_str(), "ops-1");
}

#[test]
fn refuses_to_overwrite_either_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let public_path = dir.path().join("ops-1.public");
    std::fs::write(&public_path, "precious").expect("write");
    let output = run(push().args(["keygen", "ops-1", "--out"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(&public_path).expect("read"),
        "precious"
    );
    assert!(!dir.path().join("ops-1.secret").exists());

    run_ok(push().args(["keygen", "ops-2", "--out"]).arg(dir.path()));
    let secret_path = dir.path().join("ops-2.secret");
    let before = std::fs::read(&secret_path).expect("read");
    let output = run(push().args(["keygen", "ops-2", "--out"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(std::fs::read(&secret_path).expect("read"), before);
}

#[test]
fn refuses_a_bad_key_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(push().args(["keygen", "ops:1", "--out"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("key name"));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}
