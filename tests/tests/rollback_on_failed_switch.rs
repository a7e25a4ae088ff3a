//! A switch that fails ends `rolled_back`, with the previous system active
//! again (profile and running system); on a first deploy, with nothing to
//! roll back to, it ends `failed`.

mod support;

use std::time::Duration;

use deployd_lab::Lab;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{deploy, deploy_message, key, start_fleet, trusted, wait_for_end};
use support::lab_options;

#[test]
fn a_failed_switch_rolls_back_to_the_previous_system() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let good_rev = lab.flake().head().expect("head");
    let good = lab.build_and_publish(&good_rev).expect("build")[&host.name].clone();
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "good", &good, Action::Switch),
        &ops,
    );
    assert_eq!(
        wait_for_end(&lab, &host, &id, Duration::from_secs(60)).state,
        DeployState::Succeeded
    );

    let bad_rev = lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    let bad = lab.build_and_publish(&bad_rev).expect("build")[&host.name].clone();
    assert_ne!(good, bad);
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "bad", &bad, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));

    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let error = record.error.expect("an error");
    assert_eq!(error.code, "switch_failed");
    assert!(
        error.message.contains("exited with status 1"),
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
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let bad_rev = lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    let bad = lab.build_and_publish(&bad_rev).expect("build")[&host.name].clone();
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "bad", &bad, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
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
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();

    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "dry", &system, Action::DryActivate),
        &ops,
    );
    assert_eq!(
        wait_for_end(&lab, &host, &id, Duration::from_secs(60)).state,
        DeployState::Succeeded
    );
    assert_eq!(host.profile_generation(), None);
    assert_eq!(host.current_system(), None);

    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "test", &system, Action::Test),
        &ops,
    );
    assert_eq!(
        wait_for_end(&lab, &host, &id, Duration::from_secs(60)).state,
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
