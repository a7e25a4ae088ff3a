//! Under systemd, `systemd-run` that fails after the switch's unit began
//! (a timeout, a lost bus): deployd waits for the switch that runs instead
//! of calling it failed and starting a second one to roll back.

mod support;

use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{trusted, OneHost};

#[test]
fn a_systemd_run_error_after_the_unit_started_does_not_start_a_second_switch() {
    let mut one = OneHost::up();
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");

    // A systemd-run that starts the unit, then reports an error.
    std::fs::create_dir_all(one.host.outside("/var/lib/lab")).expect("dir");
    let flaky = one.host.outside("/var/lib/lab/flaky-systemd-run");
    std::fs::write(
        &flaky,
        "#!/bin/sh\n/usr/bin/systemd-run \"$@\"\necho 'Failed to wait for the unit: Connection timed out' >&2\nexit 1\n",
    )
    .expect("script");
    std::process::Command::new("chmod")
        .args(["0755"])
        .arg(&flaky)
        .status()
        .expect("chmod");
    let host = one.host.clone();
    one.lab
        .write_deployd_config(
            &host,
            &[trusted(&one.ops, None)],
            "\n[activation]\nsystemd_run = \"/var/lib/lab/flaky-systemd-run\"\n",
        )
        .expect("config");
    one.lab.start_deployd(&host).expect("restarted");

    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&rev);
    let record = one.deploy_to_end("second", &second, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(
        one.host.switch_log().expect("log").len(),
        2,
        "a second switch ran"
    );
    assert_eq!(one.host.current_system(), Some(second));
}
