//! push serve's `[[follow]]` with `canary = 1`: the canary's failed switch
//! is reported on the commit, and no other host is started; each of them
//! gets the status `error` "not started: canary NAME failed".

mod support;

use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use support::deployd::status;
use support::forge::{final_state, ForgeFleet};

#[test]
fn a_follow_with_a_canary_stops_at_the_canarys_failure() {
    let mut fleet = ForgeFleet::up(3, ForgeKind::Forgejo);
    // A first generation everywhere, so that the canary rolls back to it.
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    fleet.wait_for_final_statuses(&first, Duration::from_secs(120));
    fleet.follow_with("canary = 1");
    // push.toml's order (by name): the first is the canary.
    let mut hosts = fleet.lab.hosts().to_vec();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let canary = &hosts[0];
    let before: Vec<_> = hosts
        .iter()
        .map(|host| {
            status(&fleet.lab, host)
                .last_deploy
                .expect("a deploy")
                .deploy_id
        })
        .collect();
    fleet
        .lab
        .flake_mut()
        .commit("Change every system", |settings| settings.label += 1)
        .expect("commit");
    let rev = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&canary.name)
        .expect("commit");
    assert_eq!(fleet.hook(&first, &rev), 202);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    assert_eq!(
        final_state(&statuses, &canary.name).as_deref(),
        Some("failure"),
        "{statuses:#?}"
    );
    for (host, before) in hosts.iter().zip(&before).skip(1) {
        let last = statuses
            .iter()
            .rev()
            .find(|status| status.context == format!("deployd/{}", host.name))
            .expect("a status");
        assert_eq!(last.state, "error", "{last:?}");
        assert_eq!(
            last.description.as_deref(),
            Some(format!("not started: canary {} failed", canary.name).as_str())
        );
        let now = status(&fleet.lab, host)
            .last_deploy
            .expect("a deploy")
            .deploy_id;
        assert_eq!(&now, before, "{} was started", host.name);
    }
    let now = status(&fleet.lab, canary)
        .last_deploy
        .expect("a deploy")
        .deploy_id;
    assert_ne!(now, before[0], "the canary was deployed");
}
