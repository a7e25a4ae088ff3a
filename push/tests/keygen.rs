//! `push keygen`: the key pair's files, their modes, refusal to overwrite,
//! the default directory (private, under the user's config) and `--out`.

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

/// The mode bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn by_default_keys_go_to_a_private_config_directory() {
    let home = tempfile::tempdir().expect("temp dir");
    let output = run_ok(
        push()
            .args(["keygen", "ops-1"])
            .current_dir(home.path())
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME"),
    );
    let keys = home.path().join(".config/deployd/keys");
    for dir in [
        home.path().join(".config"),
        home.path().join(".config/deployd"),
        keys.clone(),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&keys.join("ops-1.secret")), 0o600);
    assert!(keys.join("ops-1.public").is_file());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "DEPLOYD_KEY_FILE={}",
            keys.join("ops-1.secret").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // Nothing in the directory it ran in.
    assert_eq!(
        std::fs::read_dir(home.path()).expect("dir").count(),
        1,
        "only .config"
    );

    // XDG_CONFIG_HOME comes first.
    let config = home.path().join("xdg");
    run_ok(
        push()
            .args(["keygen", "ops-2"])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", &config),
    );
    assert!(config.join("deployd/keys/ops-2.secret").is_file());
    assert_eq!(mode(&config.join("deployd/keys")), 0o700);
    assert_eq!(mode(&config), 0o700);
}

#[test]
fn out_creates_a_private_directory_and_refuses_one_others_may_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("new/keys");
    run_ok(push().args(["keygen", "ops-1", "--out"]).arg(&out));
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert!(out.join("ops-1.secret").is_file());

    // Readable by others: written, with a warning (the secret is 0600).
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = run_ok(push().args(["keygen", "ops-1", "--out"]).arg(&shared));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("mode 755"),
        "{stderr}"
    );
    assert_eq!(mode(&shared.join("ops-1.secret")), 0o600);

    // Writable by others: refused, nothing written.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let output = run(push().args(["keygen", "ops-1", "--out"]).arg(&open));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writable by other users"), "{stderr}");
    assert_eq!(std::fs::read_dir(&open).expect("dir").count(), 0);
}
