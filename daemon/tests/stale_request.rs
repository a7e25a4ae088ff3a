//! A deploy accepted but never started (the daemon stopped first, or a
//! failed write hid its start) is started after a restart only while its
//! request is still valid: an expired one ends `failed` and nothing runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use deployd::Config;
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, DeployRequest, Message, Request, SecretKey};

#[tokio::test]
async fn an_expired_request_found_unstarted_at_start_is_never_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    // A fetch that leaves a mark if it is ever run (`--version` is asked at start).
    let mark = dir.path().join("fetched");
    let fetch = dir.path().join("nix-store");
    std::fs::write(
        &fetch,
        format!(
            "#!/bin/sh\n[ \"$1\" = --realise ] && touch {}\nexit 1\n",
            mark.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&fetch, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let text = format!(
        "hostname = \"sambirano\"\nstate_dir = \"{}\"\n\
         [[trusted_keys]]\nkey = \"{}\"\n\
         [nix]\nnix_store = \"{}\"\nsubstituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
         [activation]\nsystem_profile = \"{}\"\ncurrent_system = \"{}\"\nbooted_system = \"{}\"\n",
        path("state"),
        ops.public_key(),
        fetch.display(),
        cache.public_key(),
        path("profiles/system"),
        path("current-system"),
        path("booted-system"),
    );
    let config = || Config::from_toml(&text, Path::new("test.toml")).expect("config");

    // Accepted (on disk, `received`), never started: valid for 1 s.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let request = DeployRequest::new(
        "stale".parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        Action::Switch,
    )
    .expect("random");
    let message = Message::new(
        "sambirano".parse().expect("host"),
        Request::Deploy(request),
        now,
        1,
    );
    let daemon = deployd::Daemon::open(config(), None).expect("daemon");
    let (accepted, is_new) = daemon
        .accept_deploy(&message.sign(&[&ops]).to_json())
        .expect("accepted");
    assert!(is_new);
    drop(daemon);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // The next daemon finds it unfinished.
    let daemon = deployd::start(config()).await.expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let record = daemon
            .deploy(accepted.deploy_id.as_str())
            .expect("the deploy")
            .record;
        if record.state.is_final() {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    assert!(
        record
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("expired")),
        "{record:?}"
    );
    assert!(!mark.exists(), "an expired request was run");
}
