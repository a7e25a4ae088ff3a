//! A system with a new init interface cannot be switched to while the old
//! one runs: NixOS's switch installs its boot entry, warns, and exits 100.
//! deployd takes that as success: the deploy ends `succeeded` with
//! `reboot_required`, the profile and boot default on the new system, the
//! old one still running, and no rollback.

mod support;

use deployd_lab::ToyFlake;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{switched_systems, OneHost};

#[test]
fn status_100_succeeds_and_asks_for_a_reboot() {
    let mut one = OneHost::up();
    let first = one.deploy_head();
    let next = one.commit_system(ToyFlake::commit_new_init_interface);
    let record = one.deploy_to_end("next", &next, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(record.error.is_none(), "{record:?}");
    assert!(record.reboot_required, "{record:?}");
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("status 100") && line.contains("next boot")),
        "{:?}",
        record.log_tail
    );
    let host = &one.host;
    assert_eq!(host.profile_generation().as_deref(), Some("system-2-link"));
    assert_eq!(host.profile_system().as_ref(), Some(&next));
    assert_eq!(host.current_system().as_ref(), Some(&first));
    // One switch of the new system, none back.
    assert_eq!(switched_systems(host), [first.clone(), next.clone()]);
    assert!(support::deployd::status(&one.lab, host).reboot_required);
}
