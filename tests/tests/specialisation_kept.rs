//! A host running a specialisation of its current system stays in the
//! specialisation of the same name in the new one, as `nixos-rebuild
//! --specialisation` keeps it; a deploy that names a specialisation the
//! system lacks is refused before anything changes.

mod support;

use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, Request};
use support::deployd::{deploy, deploy_message, wait_for_end, OneHost};

/// The store path a host's link resolves to.
fn resolved(one: &OneHost, path: &str) -> String {
    let output = one
        .host
        .command("readlink", ["-f", path])
        .output()
        .expect("readlink");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_host_in_a_specialisation_stays_in_it() {
    let mut one = OneHost::up();
    let name = one.host.name.clone();
    let rev = one
        .lab
        .flake_mut()
        .commit_specialisation(&name, "work")
        .expect("commit");
    let first = one.system_at(&rev);
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");

    // The operator enters the specialisation, as `nixos-rebuild test
    // --specialisation work` does.
    let entered = one
        .host
        .sh("/nix/var/nix/profiles/system/specialisation/work/bin/switch-to-configuration test")
        .expect("switch");
    assert!(entered.status.success(), "{entered:?}");
    let work = resolved(&one, &format!("{first}/specialisation/work"));
    assert_ne!(work, first);
    assert_eq!(resolved(&one, "/run/current-system"), work);

    // The next system keeps it: its own `work` runs, its base is the profile.
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let next = one.system_at(&rev);
    let record = one.deploy_to_end("next", &next, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let next_work = resolved(&one, &format!("{next}/specialisation/work"));
    assert_ne!(next_work, work);
    assert_eq!(resolved(&one, "/run/current-system"), next_work);
    assert_eq!(one.host.profile_system().as_ref(), Some(&next));
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("specialisation work")),
        "{:?}",
        record.log_tail
    );

    // A specialisation the system does not have is refused.
    let mut message = deploy_message(&one.host, "missing", &next, Action::Switch);
    if let Request::Deploy(request) = &mut message.request {
        request.specialisation = Some("holiday".into());
    }
    let id = deploy(&one.lab, &one.host, &message, &one.ops);
    let record = wait_for_end(&one.lab, &one.host, &id, std::time::Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.expect("an error");
    assert_eq!(error.code, "not_a_system");
    assert!(error.message.contains("holiday"), "{}", error.message);
    assert_eq!(resolved(&one, "/run/current-system"), next_work);
}
