//! deployd binds its socket before it opens its state: a daemon that cannot
//! listen exits at once and touches nothing, so it never resumes an
//! unfinished deploy only to die in the middle of a step (and
//! `Restart=always` would repeat that).

use std::net::TcpListener;
use std::process::Command;

use deployd_protocol::SecretKey;

#[test]
fn a_daemon_that_cannot_listen_touches_no_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address");
    let state = dir.path().join("state");
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{address}\"\nhostname = \"sambirano\"\nstate_dir = \"{}\"\n\
             [[trusted_keys]]\nkey = \"{}\"\n\
             [nix]\nsubstituters = [\"http://127.0.0.1:9\"]\n\
             trusted_public_keys = [\"{}\"]\n",
            state.display(),
            ops.public_key(),
            cache.public_key(),
        ),
    )
    .expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("--config")
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("deployd runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(
        !state.exists(),
        "the state was opened before the socket was bound"
    );
}
