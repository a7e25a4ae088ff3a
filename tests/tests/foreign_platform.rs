//! A system built for another platform (its `system` file) is refused after
//! the fetch, before the profile moves: `not_a_system`, naming both
//! platforms, and nothing run.

mod support;

use deployd_lab::{foreign_platform, nix_system, ToyFlake};
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{switched_systems, OneHost};

#[test]
fn a_system_for_another_platform_is_refused_before_anything_changes() {
    let mut one = OneHost::up();
    let first = one.deploy_head();
    let runs_before = switched_systems(&one.host);
    let foreign = one.commit_system(ToyFlake::commit_foreign_platform);
    let record = one.deploy_to_end("foreign", &foreign, Action::Switch);
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.expect("an error");
    assert_eq!(error.code, "not_a_system", "{error:?}");
    let here = nix_system();
    assert!(
        error.message.contains(foreign_platform(&here)) && error.message.contains(&here),
        "{}",
        error.message
    );
    let host = &one.host;
    assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
    assert_eq!(host.current_system().as_ref(), Some(&first));
    assert_eq!(switched_systems(host), runs_before);
}
