//! Quarantine on real hosts: a system that rolled back is refused
//! `quarantined` when it comes again within `quarantine_s` (the product's
//! default, a day), whether `push serve` sends it again for a redelivered
//! hook (once the service has lost its own memory of it) or for a later
//! commit that leaves it as it was, or an operator pushes the same revision
//! again; the host's profile does not move. `push --retry-failed` sends it anyway,
//! and the toy system's failing switch rolls back again.

mod support;

use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use support::deployd::status;
use support::forge::ForgeFleet;
use support::push::{system_at, text, PushLab};

#[test]
fn push_serve_reports_a_quarantined_system_on_the_commit_and_leaves_the_host_alone() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::GitHub);
    let host = fleet.lab.hosts()[0].clone();
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    fleet.wait_for_final_statuses(&first, Duration::from_secs(120));
    let good = system_at(fleet.lab.flake().dir(), &first, &host.name);

    let bad = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    assert_eq!(fleet.hook(&first, &bad), 202);
    let statuses = fleet.wait_for_final_statuses(&bad, Duration::from_secs(120));
    let rolled_back = statuses.last().expect("a status");
    assert_eq!(rolled_back.state, "failure", "{rolled_back:?}");
    let failed_id = status(&fleet.lab, &host)
        .last_deploy
        .expect("the deploy that rolled back")
        .deploy_id;
    let generation = host.profile_generation();
    assert_eq!(host.current_system(), Some(good.clone()));

    // The hook of the failing commit, redelivered: push serve knows it
    // (the host is asked nothing).
    let delivery = fleet
        .forge
        .hook_deliveries()
        .into_iter()
        .find(|delivery| delivery.after.as_deref() == Some(bad.as_str()))
        .expect("the delivery of the failing commit");
    let redelivered = fleet.forge.redeliver(&delivery).expect("redeliver");
    assert_eq!(redelivered.status, 204, "{}", redelivered.body);

    // The same redelivery to a service that lost its memory (a new machine,
    // a second service): it deploys the commit again, and the host refuses.
    fleet.kill_service();
    std::fs::remove_file(fleet.service_file("state").join("queue.json")).expect("queue.json");
    fleet.start_service();
    let redelivered = fleet.forge.redeliver(&delivery).expect("redeliver");
    assert_eq!(redelivered.status, 202, "{}", redelivered.body);
    let refused_on = |rev: &str| {
        let context = format!("deployd/{}", host.name);
        fleet
            .forge
            .statuses()
            .into_iter()
            .rev()
            .find(|status| status.sha == rev && status.context == context)
            .filter(|status| status.state == "error")
    };
    let refused = support::wait_until(Duration::from_secs(120), || refused_on(&bad).is_some());
    assert!(refused, "{}", fleet.service_log());
    let reason = refused_on(&bad)
        .and_then(|status| status.description)
        .unwrap_or_default();
    assert!(
        reason.contains("refused") && reason.contains("quarantined"),
        "{reason}"
    );
    assert_eq!(host.profile_generation(), generation, "the profile moved");
    assert_eq!(host.current_system(), Some(good.clone()));

    // A later commit that leaves the system as it was (a retry loop, a
    // commit that fixed nothing): the same store path, refused.
    let again = fleet
        .lab
        .flake_mut()
        .commit("Touch nothing the host runs", |_| {})
        .expect("commit");
    assert_eq!(
        system_at(fleet.lab.flake().dir(), &again, &host.name),
        system_at(fleet.lab.flake().dir(), &bad, &host.name)
    );
    assert_eq!(fleet.hook(&bad, &again), 202);
    let statuses = fleet.wait_for_final_statuses(&again, Duration::from_secs(120));
    let refused = statuses.last().expect("a status");
    assert_eq!(refused.state, "error", "{refused:?}");
    let reason = refused.description.clone().unwrap_or_default();
    assert!(
        reason.contains("refused") && reason.contains("quarantined"),
        "{reason}"
    );
    assert_eq!(host.profile_generation(), generation, "the profile moved");
    assert_eq!(host.current_system(), Some(good));
    let host_status = status(&fleet.lab, &host);
    assert_eq!(
        host_status.last_deploy.expect("last deploy").deploy_id,
        failed_id,
        "no deploy was recorded"
    );
    assert_eq!(
        host_status.quarantined.len(),
        1,
        "{:?}",
        host_status.quarantined
    );
    assert_eq!(host_status.quarantined[0].deploy_id, failed_id);
}

#[test]
fn push_refuses_a_quarantined_host_and_retry_failed_sends_it_again() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let good = host.current_system().expect("a system");

    let bad = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    let lab = &fleet.lab;
    let output = fleet.push(&["--all", &bad]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled_back"), "{stdout}\n{stderr}");
    let generation = host.profile_generation();
    let failed_id = status(lab, &host).last_deploy.expect("deploy").deploy_id;

    // The same revision again: refused, with the host's reason.
    let output = fleet.push(&["--all", &bad]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with(&host.name))
        .unwrap_or_default();
    assert!(
        line.contains("refused")
            && stdout.contains("quarantined")
            && stdout.contains(failed_id.as_str())
            && stdout.contains("--retry-failed"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(host.profile_generation(), generation, "the profile moved");
    assert_eq!(host.current_system(), Some(good.clone()));

    // With --retry-failed it is deployed, and rolls back again.
    let output = fleet.push(&["--all", "--retry-failed", &bad]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled_back"), "{stdout}\n{stderr}");
    let after = status(lab, &host);
    let retried = after.last_deploy.expect("deploy").deploy_id;
    assert_ne!(retried, failed_id, "a new deploy ran");
    assert_eq!(after.quarantined[0].deploy_id, retried);
    assert_eq!(host.current_system(), Some(good));
}
