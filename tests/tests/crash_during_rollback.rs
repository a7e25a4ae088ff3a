//! Under systemd, deployd killed while a rollback runs, or between the two
//! writes that open a confirmation window: the restarted daemon resumes the
//! rollback (never starting a second one, never re-checking a half
//! rolled-back system, never taking a confirm for it) and keeps the window
//! open for a confirm.

mod support;

use std::time::Duration;

use deployd_lab::{Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::{Action, Request};
use support::deployd::{
    deploy, deploy_message, wait_for_deployd_restart, wait_for_end, wait_for_state, OneHost,
};
use support::wait_until;

/// A deploy of `system` that asks for a confirmation within `window_s`.
fn deploy_to_confirm(one: &OneHost, id: &str, system: &str, window_s: u64) -> String {
    let mut message = deploy_message(&one.host, id, system, Action::Switch);
    if let Request::Deploy(request) = &mut message.request {
        request.confirm_within_s = Some(window_s);
    }
    deploy(&one.lab, &one.host, &message, &one.ops)
}

/// Kills deployd with SIGKILL and waits until systemd has it back.
fn kill_and_wait_for_restart(one: &OneHost) {
    let before = one.lab.deployd_pid(&one.host).expect("deployd runs");
    one.lab.signal_deployd(&one.host, "KILL").expect("kill -9");
    wait_for_deployd_restart(&one.lab, &one.host, before);
}

/// Waits until the host's toy switch has run `count` times.
fn wait_for_switches(host: &Node, count: usize) {
    assert!(
        wait_until(Duration::from_secs(60), || host
            .switch_log()
            .is_ok_and(|log| log.len() >= count)),
        "the switch did not run {count} times"
    );
}

/// The deploy ended `rolled_back` after one rollback switch (three runs of
/// the switch in all), with `first` back in the profile and running.
fn assert_rolled_back_once_to(one: &OneHost, record: &DeployRecord, first: &str) {
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    assert_eq!(
        one.host.switch_log().expect("log").len(),
        3,
        "rolled back twice"
    );
    assert_eq!(one.host.current_system().as_deref(), Some(first));
    assert_eq!(one.host.profile_system().as_deref(), Some(first));
}

/// Changes deploy `id`'s stored record and progress (deployd stopped), as a
/// crash at some moment would have left them.
fn edit_stored_deploy(host: &Node, id: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let file = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}/record.json"));
    let mut stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("record")).expect("json");
    change(&mut stored);
    std::fs::write(&file, serde_json::to_vec(&stored).expect("json")).expect("write");
}

/// The host (healthy) with a first system, deployed, and a second built.
fn two_systems(extra: &str) -> (OneHost, String, String) {
    let mut one = OneHost::with_config(extra);
    std::fs::create_dir_all(one.host.outside("/var/lib/lab")).expect("dir");
    std::fs::write(one.host.outside("/var/lib/lab/healthy"), "").expect("healthy");
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&rev);
    (one, first, second)
}

#[test]
fn killed_while_rolling_back_an_unconfirmed_deploy_the_rollback_resumes_once() {
    let (one, first, second) = two_systems("");
    let id = deploy_to_confirm(&one, "unconfirmed", &second, 3);
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "awaiting_confirm",
        Duration::from_secs(60),
    );
    // The rollback's switch (the second run) waits at the gate.
    one.host.set_switch_gate(true).expect("gate");
    wait_for_switches(&one.host, 3);
    kill_and_wait_for_restart(&one);
    // The rollback is under way: a confirm now is refused.
    assert_ne!(
        one.confirm(&id),
        200,
        "a confirm was taken during the rollback"
    );
    one.host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_rolled_back_once_to(&one, &record, &first);
    assert!(
        record
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("not confirmed")),
        "{record:?}"
    );
}

#[test]
fn killed_while_rolling_back_an_unhealthy_deploy_it_does_not_check_again() {
    let health = "\n[health]\ndeadline_s = 2\ninterval_s = 1\n\n[[health.commands]]\ncommand = [\"/bin/sh\", \"-c\", \"test -e /var/lib/lab/healthy\"]\n";
    let (one, first, second) = two_systems(health);
    std::fs::remove_file(one.host.outside("/var/lib/lab/healthy")).expect("unhealthy");
    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "unhealthy", &second, Action::Switch),
        &one.ops,
    );
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "checking_health",
        Duration::from_secs(60),
    );
    one.host.set_switch_gate(true).expect("gate");
    wait_for_switches(&one.host, 3);
    kill_and_wait_for_restart(&one);
    // Healthy now: a daemon that checked again would call it a success.
    std::fs::write(one.host.outside("/var/lib/lab/healthy"), "").expect("healthy");
    one.host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_rolled_back_once_to(&one, &record, &first);
}

#[test]
fn a_crash_as_the_confirm_window_opens_keeps_the_window() {
    let (mut one, _, second) = two_systems("");
    let id = deploy_to_confirm(&one, "window", &second, 60);
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "awaiting_confirm",
        Duration::from_secs(60),
    );
    // As if deployd died after writing the window's end but before the
    // state: stop it, take the state back to `activating`, start it.
    let host = one.host.clone();
    one.lab.stop_deployd(&host).expect("stop");
    edit_stored_deploy(&host, &id, |stored| {
        assert!(
            stored["progress"]["confirm_deadline_ms"].is_u64(),
            "{stored}"
        );
        stored["record"]["state"] = "activating".into();
        stored["record"]["phases"]
            .as_array_mut()
            .expect("phases")
            .pop();
    });
    one.lab.start_deployd(&host).expect("start");
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "awaiting_confirm",
        Duration::from_secs(30),
    );
    assert_eq!(one.confirm(&id), 200);
    let record: DeployRecord = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(second));
}

#[test]
fn a_switch_from_before_a_reboot_is_not_waited_for_when_its_pid_is_reused() {
    let (mut one, first, second) = two_systems("");
    one.host.set_switch_gate(true).expect("gate");
    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "rebooted", &second, Action::Switch),
        &one.ops,
    );
    wait_for_switches(&one.host, 2);
    // As after a power loss mid-switch: deployd and the switch are gone, and
    // the switch's pid now names another process (the host's PID 1), in a
    // boot with another id than the launch's.
    let host = one.host.clone();
    one.lab.stop_deployd(&host).expect("stop deployd");
    let unit = format!("deployd-switch-{id}-1.service");
    host.run(&["systemctl", "stop", &unit])
        .expect("stop the switch");
    one.host.set_switch_gate(false).expect("gate");
    let pid_file = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}/switch-1.pid"));
    std::fs::write(pid_file, "1\n").expect("pid");
    edit_stored_deploy(&host, &id, |stored| {
        let launch = &mut stored["progress"]["switch"];
        assert!(launch.is_object(), "{launch}");
        launch["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    });

    let started = std::time::Instant::now();
    one.lab.start_deployd(&host).expect("start");
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?} for a switch from another boot",
        started.elapsed()
    );
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    assert!(
        record
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("restarted")),
        "{record:?}"
    );
    assert_eq!(one.host.current_system(), Some(first));
    let running = host
        .command("systemctl", ["is-system-running"])
        .output()
        .expect("systemctl");
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "running");
}

#[test]
fn a_switch_resumed_after_a_restart_logs_each_of_its_lines_once() {
    let (one, _, second) = two_systems("");
    one.host.set_switch_gate(true).expect("gate");
    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "resumed", &second, Action::Switch),
        &one.ops,
    );
    let log = one
        .host
        .outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}/log"));
    let says = |text: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || says("switching to") == 1),
        "the switch's first line never reached the deploy's log"
    );
    kill_and_wait_for_restart(&one);
    one.host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(says("switching to"), 1, "a line streamed twice");
    assert_eq!(says("activated /nix/store/"), 1);
}
