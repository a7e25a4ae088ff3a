//! Under systemd, with the `is-system-running` health check on: a unit that
//! had failed before a deploy is not the deploy's fault and does not roll
//! it back, while a unit that the new system makes fail still does.
//!
//! As NixOS's switch-to-configuration does, the toy switch runs `systemctl
//! reset-failed`, so a unit failed before the deploy is no longer failed
//! right after the switch. What still matters is a unit that fails again on
//! its own (a job its timer starts, say). Here the test plays that timer:
//! the deploy asks for a confirmation, and the unit fails again while the
//! deploy waits for it, so the health checks that follow the confirmation
//! always find it failed.

mod support;

use std::time::Duration;

use deployd_lab::Node;
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, Request};
use support::deployd::{deploy, deploy_message, wait_for_end, wait_for_state, OneHost};

/// A unit of the host's own (no deployed system has it) that fails each time
/// it runs.
const FLAKY_UNIT: &str = "lab-flaky.service";

/// What `systemctl is-failed UNIT` prints on `host`.
fn failed_state(host: &Node, unit: &str) -> String {
    let output = host
        .command("systemctl", ["is-failed", unit])
        .output()
        .expect("systemctl is-failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs the flaky unit once on `host` (it fails), as its timer would.
fn fail_flaky_unit(host: &Node) {
    let started = host
        .command("systemctl", ["start", FLAKY_UNIT])
        .output()
        .expect("systemctl start");
    assert!(!started.status.success(), "{FLAKY_UNIT} did not fail");
    assert_eq!(failed_state(host, FLAKY_UNIT), "failed");
}

#[test]
fn a_unit_failed_before_the_deploy_does_not_roll_it_back() {
    // A short deadline: a failure that counts fails every round.
    let mut one = OneHost::with_config("\n[health]\ndeadline_s = 6\ninterval_s = 2\n");
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");

    one.host
        .sh(&format!(
            "printf '[Unit]\\nDescription=a job of the host that fails\\n\\n[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \"echo lab-flaky fails; exit 1\"\\n' > /etc/systemd/system/{FLAKY_UNIT} && systemctl daemon-reload"
        ))
        .expect("unit file");
    fail_flaky_unit(&one.host);

    // The next system; a confirmation window holds the deploy between the
    // switch and the health checks.
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&rev);
    let mut message = deploy_message(&one.host, "second", &second, Action::Switch);
    if let Request::Deploy(request) = &mut message.request {
        request.confirm_within_s = Some(120);
    }
    let id = deploy(&one.lab, &one.host, &message, &one.ops);
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "awaiting_confirm",
        Duration::from_secs(60),
    );
    // The switch forgot the failure, as NixOS's does; the unit fails again
    // on its own before the health checks run.
    assert_eq!(failed_state(&one.host, FLAKY_UNIT), "inactive");
    fail_flaky_unit(&one.host);
    assert_eq!(one.confirm(&id), 200);

    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(second.clone()));
    let not_counted =
        format!("deployd: {FLAKY_UNIT} was already failed before the deploy; not counted");
    assert!(
        record.log_tail.iter().any(|line| line == &not_counted),
        "{:?}",
        record.log_tail
    );
    assert_eq!(failed_state(&one.host, FLAKY_UNIT), "failed");

    // A unit that the new system makes fail still rolls the deploy back,
    // and only that unit is named.
    let name = one.host.name.clone();
    let rev = one
        .lab
        .flake_mut()
        .commit_failing_unit(&name)
        .expect("commit");
    let broken = one.system_at(&rev);
    let record = one.deploy_to_end("broken", &broken, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let message = record.error.expect("error").message;
    assert!(
        message.contains("health checks failed") && message.contains("lab-broken.service"),
        "{message}"
    );
    assert!(!message.contains(FLAKY_UNIT), "{message}");
    assert_eq!(one.host.current_system(), Some(second));
}
