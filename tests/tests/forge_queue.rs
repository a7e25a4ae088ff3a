//! `push serve`'s queue: one rollout at a time, the newest push of a branch
//! wins and the skipped ones are reported superseded; a push accepted
//! before a `kill -9` is deployed after the restart, once, waiting for the
//! deploy the killed service left running; a forge whose
//! API is down never holds a rollout up, and gets its statuses once back.

mod support;

use std::time::{Duration, Instant};

use deployd_lab::forge::ForgeKind;
use support::deployd::get;
use support::forge::{final_state, states_of, ForgeFleet};
use support::push::system_at;

/// The revisions of the deploys a host kept, oldest first.
fn deployed_revs(fleet: &ForgeFleet) -> Vec<String> {
    let host = &fleet.lab.hosts()[0];
    let (code, records) = get(&format!("{}/v1/deploys", fleet.lab.deployd_url(host)));
    assert_eq!(code, 200);
    let mut revs: Vec<String> = records
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|record| record["rev"].as_str().map(str::to_owned))
        .collect();
    revs.reverse();
    revs
}

/// Waits until the service runs a rollout of `rev` (fetched, so later
/// commits are not part of it).
fn wait_for_running(fleet: &ForgeFleet, rev: &str) {
    let running = support::wait_until(Duration::from_secs(60), || {
        fleet.service_status()["running"]["rev"] == rev
    });
    assert!(running, "{}", fleet.service_log());
}

#[test]
fn pushes_during_a_rollout_queue_and_only_the_newest_is_deployed_after_it() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::Gitea);
    let host = fleet.lab.hosts()[0].clone();
    host.set_switch_gate(true).expect("gate");
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    wait_for_running(&fleet, &first);
    let burst: Vec<String> = (0..3)
        .map(|_| fleet.push_change())
        .map(|(rev, answer)| {
            assert_eq!(answer, 202);
            rev
        })
        .collect();
    let service = fleet.service_status();
    let queued = service["queued"].as_array().expect("queued");
    assert_eq!(queued.len(), 1, "{service}");
    assert_eq!(queued[0]["after"], burst[2].as_str());
    host.set_switch_gate(false).expect("gate");

    let statuses = fleet.wait_for_final_statuses(&burst[2], Duration::from_secs(120));
    assert_eq!(
        final_state(&statuses, &host.name).as_deref(),
        Some("success")
    );
    for skipped in &burst[..2] {
        let mine: Vec<_> = fleet
            .forge
            .statuses()
            .into_iter()
            .filter(|s| s.sha == *skipped)
            .collect();
        assert_eq!(
            states_of(&mine, &host.name),
            ["error"],
            "{skipped}: {mine:?}"
        );
        let description = mine[0].description.clone().unwrap_or_default();
        assert_eq!(description, format!("superseded by {}", &burst[2][..12]));
    }
    assert_eq!(deployed_revs(&fleet), [first, burst[2].clone()]);
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &burst[2], &host.name))
    );
}

#[test]
fn a_push_queued_before_a_kill_9_is_deployed_after_the_restart_once() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::GitLab);
    let host = fleet.lab.hosts()[0].clone();
    host.set_switch_gate(true).expect("gate");
    let (first, _) = fleet.push_change();
    wait_for_running(&fleet, &first);
    // Killed once the host has the first deploy, held at the switch.
    let sent = support::wait_until(Duration::from_secs(120), || {
        support::deployd::status(&fleet.lab, &host)
            .active_deploy
            .is_some()
    });
    assert!(sent, "{}", fleet.service_log());
    let (queued, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    fleet.kill_service();
    fleet.start_service();
    // The deploy the killed service started still runs: the host answers
    // the restarted service `busy`, and the service waits for it to end.
    let waited = support::wait_until(Duration::from_secs(120), || {
        fleet.service_log().contains("busy (")
    });
    assert!(waited, "{}", fleet.service_log());
    host.set_switch_gate(false).expect("gate");

    let statuses = fleet.wait_for_final_statuses(&queued, Duration::from_secs(120));
    assert_eq!(
        final_state(&statuses, &host.name).as_deref(),
        Some("success")
    );
    let revs = deployed_revs(&fleet);
    assert_eq!(
        revs.iter().filter(|rev| **rev == queued).count(),
        1,
        "{revs:?}"
    );
    assert_eq!(revs.last(), Some(&queued));
    // The interrupted rollout gave way to the newer push, and says so.
    let interrupted: Vec<_> = fleet
        .forge
        .statuses()
        .into_iter()
        .filter(|s| s.sha == first)
        .collect();
    assert_eq!(
        final_state(&interrupted, &host.name).as_deref(),
        Some("canceled")
    );
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &queued, &host.name))
    );
}

#[test]
fn a_forge_api_that_is_down_holds_nothing_up_and_gets_its_statuses_once_back() {
    let mut fleet = ForgeFleet::up(2, ForgeKind::GitHub);
    fleet.forge.set_api_down(true);
    let hooked = Instant::now();
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    let done = support::wait_until(Duration::from_secs(120), || {
        fleet.service_status()["recent"][0]["outcome"] == "succeeded"
    });
    assert!(done, "{}", fleet.service_log());
    let rollout = hooked.elapsed();
    eprintln!("rollout with the forge API down: {rollout:?}");
    for host in fleet.lab.hosts() {
        assert_eq!(
            host.current_system(),
            Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
        );
    }
    assert!(
        fleet.forge.statuses().is_empty(),
        "{:?}",
        fleet.forge.statuses()
    );
    assert!(!fleet.forge.statuses_while_down().is_empty());

    fleet.forge.set_api_down(false);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(60));
    for host in fleet.lab.hosts() {
        assert_eq!(
            states_of(&statuses, &host.name),
            ["pending", "pending", "success"]
        );
    }
}
