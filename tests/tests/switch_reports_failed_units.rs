//! NixOS's switch resets failed units, then starts every active target, and
//! exits 4 when units are failed at its end. deployd takes status 4 as
//! "switched" and lets its health rules judge the units: one that had failed
//! before the deploy and fails again in the switch (a target wants it) does
//! not roll the deploy back; one that the new system breaks does, named in
//! the record, unless `allowed_failed_units` lists it. A failed activation
//! that status 4 hides still rolls back.

mod support;

use deployd_lab::UnitRuns;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::OneHost;

/// A unit of the host's own that `lab.target` wants and that fails each
/// time it runs.
const FLAKY_UNIT: &str = "lab-flaky.service";
/// A unit the new system brings, wanted by `lab.target`, that fails.
const BROKEN_UNIT: &str = "lab-broken-by-system.service";
/// Short health rounds: a failure that counts fails every round.
const HEALTH: &str = "\n[health]\ndeadline_s = 6\ninterval_s = 2\n";

/// Whether a line of the deploy's log holds `needle`.
fn logged(record: &deployd_protocol::api::DeployRecord, needle: &str) -> bool {
    record.log_tail.iter().any(|line| line.contains(needle))
}

#[test]
fn a_unit_failed_before_the_deploy_that_fails_again_in_the_switch_is_not_counted() {
    let mut one = OneHost::with_config(HEALTH);
    one.deploy_head();

    // The host's own unit, wanted by the target it runs, failed.
    let setup = one
        .host
        .sh(&format!(
            "printf '[Unit]\\nDescription=a job of the host that fails\\n\\n[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \"echo lab-flaky fails; exit 1\"\\n' > /etc/systemd/system/{FLAKY_UNIT} \
             && systemctl add-wants lab.target {FLAKY_UNIT} && systemctl daemon-reload \
             && ! systemctl start {FLAKY_UNIT} && systemctl is-failed {FLAKY_UNIT}"
        ))
        .expect("unit");
    assert!(setup.status.success(), "{setup:?}");

    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&rev);
    let record = one.deploy_to_end("second", &second, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(second.clone()));
    // The switch started it again and reported it (status 4); deployd did
    // not count it.
    assert!(logged(&record, "status 4"), "{:?}", record.log_tail);
    assert!(
        logged(
            &record,
            &format!("{FLAKY_UNIT} was already failed before the deploy; not counted")
        ),
        "{:?}",
        record.log_tail
    );

    // A unit the new system makes fail rolls it back, named; the switch back
    // reports the host's own failed unit too, and is still a rollback.
    let name = one.host.name.clone();
    let rev = one
        .lab
        .flake_mut()
        .commit_unit_wanted_by_target(&name, BROKEN_UNIT, UnitRuns::Fails)
        .expect("commit");
    let broken = one.system_at(&rev);
    let record = one.deploy_to_end("broken", &broken, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let message = record.error.expect("error").message;
    assert!(
        message.contains("health checks failed") && message.contains(BROKEN_UNIT),
        "{message}"
    );
    assert!(!message.contains(FLAKY_UNIT), "{message}");
    assert_eq!(one.host.current_system(), Some(second));
}

#[test]
fn an_allowed_unit_that_the_new_system_breaks_does_not_roll_it_back() {
    let config = format!("{HEALTH}allowed_failed_units = [\"{BROKEN_UNIT}\"]\n");
    let mut one = OneHost::with_config(&config);
    one.deploy_head();

    let name = one.host.name.clone();
    let rev = one
        .lab
        .flake_mut()
        .commit_unit_wanted_by_target(&name, BROKEN_UNIT, UnitRuns::Fails)
        .expect("commit");
    let broken = one.system_at(&rev);
    let record = one.deploy_to_end("allowed", &broken, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(logged(&record, "status 4"), "{:?}", record.log_tail);
    assert!(logged(&record, BROKEN_UNIT), "{:?}", record.log_tail);
    assert_eq!(one.host.current_system(), Some(broken.clone()));

    // A failed activation as well: NixOS's switch still exits 4, and only
    // its output tells; a half-activated system rolls back.
    let rev = one
        .lab
        .flake_mut()
        .commit_failing_switch(&name)
        .expect("commit");
    let half = one.system_at(&rev);
    let record = one.deploy_to_end("half", &half, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    assert!(logged(&record, "status 4"), "{:?}", record.log_tail);
    assert_eq!(record.error.expect("error").code, "activation_failed");
    assert_eq!(one.host.current_system(), Some(broken));
}
