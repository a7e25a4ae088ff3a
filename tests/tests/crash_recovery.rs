//! deployd killed with SIGKILL in the middle of a deploy and started again
//! (by the lab's supervisor, as systemd's `Restart=always` would), on a
//! machine where systemd is not PID 1, so that the switch runs as a detached
//! process group: the deploy ends truthfully, the switch never runs twice,
//! and every state file is whole. (Under systemd: switch_under_systemd.rs.)

mod support;

use std::time::Duration;

use deployd_lab::{Lab, Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::deployd::{
    deploy, deploy_message, slow_to_fetch, wait_for_deployd_restart, wait_for_end, wait_for_state,
    OneHost,
};
use support::wait_until;

/// Kills the host's deployd with SIGKILL and waits for its restart.
fn kill_deployd(lab: &Lab, host: &Node) {
    let pid = lab.deployd_pid(host).expect("deployd runs");
    lab.signal_deployd(host, "KILL").expect("kill -9");
    wait_for_deployd_restart(lab, host, pid);
}

/// Every JSON file under deployd's state parses, and every deploy's record
/// (`deploys/<id>/record.json`) is a record; no temporary file is left.
fn assert_state_whole(host: &Node) {
    let dir = host.outside(DEPLOYD_STATE_DIR);
    let mut files = vec![dir.join("nonces.json"), dir.join("active.json")];
    for deploy in std::fs::read_dir(dir.join("deploys"))
        .expect("deploys")
        .flatten()
    {
        for file in std::fs::read_dir(deploy.path())
            .expect("a deploy's files")
            .flatten()
        {
            files.push(file.path());
        }
    }
    let mut records = 0;
    for path in files {
        let name = path.to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "a temporary file was left: {name}");
        if !name.ends_with(".json") || !path.exists() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.ends_with("/record.json") {
            serde_json::from_value::<DeployRecord>(value["record"].clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            records += 1;
        }
    }
    assert!(
        records >= 2,
        "fewer records than deploys were checked: {records}"
    );
}

/// One host that runs its first system, deployed by deployd.
fn setup() -> (OneHost, String) {
    let one = OneHost::without_systemd();
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded);
    (one, first)
}

#[test]
fn killed_while_fetching_the_deploy_fails_and_nothing_changed() {
    let (one, first) = setup();
    let OneHost { mut lab, ops, host } = one;
    let system = slow_to_fetch(&mut lab, &host);
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "fetching", &system, Action::Switch),
        &ops,
    );
    wait_for_state(&lab, &host, &id, "fetching", Duration::from_secs(30));

    kill_deployd(&lab, &host);
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    assert_eq!(record.error.expect("error").code, "interrupted");
    assert_eq!(host.profile_system().as_ref(), Some(&first));
    assert_eq!(host.current_system().as_ref(), Some(&first));
    assert_eq!(host.switch_log().expect("log").len(), 1);
    assert_state_whole(&host);
}

#[test]
fn killed_while_switching_the_deploy_still_succeeds_once() {
    let (one, _) = setup();
    let OneHost { mut lab, ops, host } = one;
    let rev = lab.flake_mut().commit_changed_system().expect("commit");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    host.set_switch_delay(3).expect("delay");
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "switching", &system, Action::Switch),
        &ops,
    );
    wait_for_state(&lab, &host, &id, "activating", Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(20), || host
        .switch_log()
        .expect("log")
        .len()
        == 2));

    kill_deployd(&lab, &host);
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_ref(), Some(&system));
    assert_eq!(host.profile_system().as_ref(), Some(&system));
    let runs: Vec<String> = host
        .switch_log()
        .expect("log")
        .into_iter()
        .map(|r| r.system)
        .collect();
    assert_eq!(
        runs.iter().filter(|s| **s == system).count(),
        1,
        "activated twice: {runs:?}"
    );
    assert_state_whole(&host);
}

#[test]
fn killed_while_a_failing_switch_runs_the_restarted_daemon_rolls_back() {
    let (one, first) = setup();
    let OneHost { mut lab, ops, host } = one;
    let rev = lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    host.set_switch_delay(3).expect("delay");
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "failing", &system, Action::Switch),
        &ops,
    );
    assert!(wait_until(Duration::from_secs(30), || host
        .switch_log()
        .expect("log")
        .len()
        == 2));
    host.set_switch_delay(0).expect("no delay");

    kill_deployd(&lab, &host);
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    assert_eq!(host.current_system().as_ref(), Some(&first));
    assert_eq!(host.profile_system().as_ref(), Some(&first));
    let runs: Vec<String> = host
        .switch_log()
        .expect("log")
        .into_iter()
        .map(|r| r.system)
        .collect();
    assert_eq!(runs, [first.clone(), system.clone(), first.clone()]);
    assert_state_whole(&host);
}

#[test]
fn without_systemd_the_daemon_logs_to_stderr_and_switches_outside_any_unit() {
    let (one, first) = setup();
    assert!(one.host.pid1.is_none());
    // No systemd on this host: nothing for deployd to notify or run units in.
    assert!(!one.host.outside("/run/systemd/system").exists());
    let log = std::fs::read_to_string(one.host.root.join("deployd.log")).expect("deployd's stderr");
    assert!(
        log.lines()
            .any(|line| line.starts_with("info: ") && line.contains("deploy_id=first")),
        "{log}"
    );
    let record = one.deploy_to_end("again", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
}
