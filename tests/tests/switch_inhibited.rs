//! NixOS's pre-switch checks (switch inhibitors) refuse a `switch` to a
//! system that changes a critical component: deployd runs them before the
//! profile moves, so the deploy ends `failed`, `switch_inhibited`, with no
//! new generation and the running system neither touched nor re-activated.
//! The same system deployed with `--action boot` (which skips the inhibitor
//! check, as NixOS does) succeeds, waiting for the next boot.

mod support;

use deployd_lab::ToyFlake;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{switched_systems, OneHost};

#[test]
fn an_inhibited_switch_changes_nothing_and_boot_takes_it() {
    let mut one = OneHost::up();
    let first = one.deploy_head();
    let runs_before = switched_systems(&one.host);
    let inhibited = one.commit_system(ToyFlake::commit_changed_inhibitors);
    let record = one.deploy_to_end("inhibited", &inhibited, Action::Switch);
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.expect("an error");
    assert_eq!(error.code, "switch_inhibited", "{error:?}");
    assert!(error.message.contains("--action boot"), "{}", error.message);
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("Pre-switch checks failed")),
        "the checks' output is in the log: {:?}",
        record.log_tail
    );
    // No new generation, the running system untouched, nothing activated
    // again (the stand-in records every switch that got past its checks).
    let host = &one.host;
    assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
    assert_eq!(host.profile_system().as_ref(), Some(&first));
    assert_eq!(host.current_system().as_ref(), Some(&first));
    assert_eq!(switched_systems(host), runs_before);

    // `boot` skips the inhibitor check: the system waits for the next boot.
    let record = one.deploy_to_end("at-boot", &inhibited, Action::Boot);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(record.reboot_required, "{record:?}");
    assert_eq!(host.profile_system().as_ref(), Some(&inhibited));
    assert_eq!(host.current_system().as_ref(), Some(&first));
    assert!(support::deployd::status(&one.lab, host).reboot_required);
}
