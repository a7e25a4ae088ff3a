//! A switch that fails ends `rolled_back`, with the previous system active
//! again (profile and running system); on a first deploy, with nothing to
//! roll back to, it ends `failed`.

mod support;

use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::OneHost;

#[test]
fn a_failed_switch_rolls_back_to_the_previous_system() {
    let mut one = OneHost::up();
    let good = one.head_system();
    assert_eq!(
        one.deploy_to_end("good", &good, Action::Switch).state,
        DeployState::Succeeded
    );

    let bad_rev = one
        .lab
        .flake_mut()
        .commit_failing_switch(&one.host.name)
        .expect("commit");
    let bad = one.system_at(&bad_rev);
    assert_ne!(good, bad);
    let record = one.deploy_to_end("bad", &bad, Action::Switch);

    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let error = record.error.expect("an error");
    // The system's activation script failed: NixOS's switch goes on, then
    // exits 2, which deployd names.
    assert_eq!(error.code, "activation_failed");
    assert!(
        error.message.contains("exited with status 2"),
        "{}",
        error.message
    );
    assert_eq!(record.previous_system.as_ref(), Some(&good));
    assert!(
        record
            .log_tail
            .iter()
            .any(|l| l.contains("fails on purpose")),
        "{:?}",
        record.log_tail
    );
    // The previous system is active again, in the profile and running.
    let host = &one.host;
    assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
    assert_eq!(host.profile_system().as_ref(), Some(&good));
    assert_eq!(host.current_system().as_ref(), Some(&good));
    let runs: Vec<(String, String)> = host
        .switch_log()
        .expect("log")
        .into_iter()
        .map(|r| (r.action, r.system))
        .collect();
    assert_eq!(
        runs,
        [
            ("switch".into(), good.clone()),
            ("switch".into(), bad.clone()),
            ("switch".into(), good.clone()),
        ]
    );
}

#[test]
fn a_failed_first_switch_has_nothing_to_roll_back_to() {
    let mut one = OneHost::up();
    let bad_rev = one
        .lab
        .flake_mut()
        .commit_failing_switch(&one.host.name)
        .expect("commit");
    let bad = one.system_at(&bad_rev);
    let record = one.deploy_to_end("bad", &bad, Action::Switch);
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.expect("an error");
    assert!(
        error.message.contains("no previous system"),
        "{}",
        error.message
    );
}

#[test]
fn test_and_dry_activate_leave_the_profile_alone() {
    let one = OneHost::up();
    let host = &one.host;
    let system = one.head_system();

    assert_eq!(
        one.deploy_to_end("dry", &system, Action::DryActivate).state,
        DeployState::Succeeded
    );
    assert_eq!(host.profile_generation(), None);
    assert_eq!(host.current_system(), None);

    assert_eq!(
        one.deploy_to_end("test", &system, Action::Test).state,
        DeployState::Succeeded
    );
    assert_eq!(
        host.profile_generation(),
        None,
        "test must not add a generation"
    );
    assert_eq!(host.current_system().as_ref(), Some(&system));
    let root = host.outside("/var/lib/deployd/gc-roots/test");
    assert_eq!(
        std::fs::read_link(&root)
            .expect("a GC root for the test system")
            .to_string_lossy(),
        system
    );
    let actions: Vec<String> = host
        .switch_log()
        .expect("log")
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["dry-activate", "test"]);
}
