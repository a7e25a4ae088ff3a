//! A system built for another platform (its `system` file) is refused after
//! the fetch, before the profile moves: `not_a_system`, naming both
//! platforms, and nothing run.

mod support;

use deployd_lab::{foreign_platform, nix_system};
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::OneHost;

#[test]
fn a_system_for_another_platform_is_refused_before_anything_changes() {
    let mut one = OneHost::up();
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let runs_before = one.host.switch_log().expect("log").len();

    let name = one.host.name.clone();
    let rev = one
        .lab
        .flake_mut()
        .commit_foreign_platform(&name)
        .expect("commit");
    let foreign = one.system_at(&rev);
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
    assert_eq!(host.switch_log().expect("log").len(), runs_before);
}
