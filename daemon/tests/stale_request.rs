//! A deploy accepted but never started (the daemon stopped first, or a
//! failed write hid its start) is started after a restart only while its
//! request is still valid: an expired one ends `failed` and nothing runs.

mod support;

use std::path::Path;
use std::time::Duration;

use deployd::Config;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::{config_text, deploy_envelope, key, now, stand_in_nix_store};

#[tokio::test]
async fn an_expired_request_found_unstarted_at_start_is_never_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = key("ops-1");
    // A fetch that leaves a mark if it is ever run (`--version` is asked at start).
    let mark = dir.path().join("fetched");
    let fetch = stand_in_nix_store(
        dir.path(),
        &format!(
            "#!/bin/sh\n[ \"$1\" = --realise ] && touch {}\nexit 1\n",
            mark.display()
        ),
    );
    let text = config_text(dir.path(), &ops, "", Some(&fetch));
    let config = || Config::from_toml(&text, Path::new("test.toml")).expect("config");

    // Accepted (on disk, `received`), never started: valid for 1 s.
    let daemon = deployd::Daemon::open(config(), deployd::Environment::default()).expect("daemon");
    let admission = daemon
        .accept_deploy(&deploy_envelope(&ops, "stale", (now(), 1), Action::Switch))
        .expect("accepted");
    let deployd::daemon::Admission::New(accepted) = admission else {
        panic!("a new deploy was taken for a retry: {admission:?}");
    };
    drop(daemon);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // The next daemon finds it unfinished.
    let daemon = deployd::start(config(), deployd::Environment::default())
        .await
        .expect("start");
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
