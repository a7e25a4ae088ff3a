//! `push --canary --batch --max-failures` against six real hosts under
//! systemd: the hosts' own verdicts gate the next batch, measured from the
//! hosts' deploy records (never from push's own output). One lab of six
//! hosts is shared by the scenarios; each asserts its own claims.

mod support;

use deployd_lab::Node;
use deployd_protocol::api::DeployRecord;
use support::deployd::{record, status};
use support::push::{text, PushLab};

/// The lab's hosts in push.toml's order (by name), as push takes them.
fn hosts(fleet: &PushLab) -> Vec<Node> {
    let mut hosts = fleet.lab.hosts().to_vec();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    hosts
}

/// Each host's last deploy id (none before its first), by name.
fn last_deploys(fleet: &PushLab) -> Vec<Option<String>> {
    hosts(fleet)
        .iter()
        .map(|host| {
            status(&fleet.lab, host)
                .last_deploy
                .map(|deploy| deploy.deploy_id.to_string())
        })
        .collect()
}

/// The deploy record of `host`'s last deploy.
fn last_record(fleet: &PushLab, host: &Node) -> DeployRecord {
    let id = status(&fleet.lab, host)
        .last_deploy
        .expect("a deploy")
        .deploy_id;
    record(&fleet.lab, host, id.as_str())
}

/// `push`'s JSON summary, by host: (result, batch, reason).
fn summary(stdout: &str) -> Vec<(String, String, String, String)> {
    let json: serde_json::Value = serde_json::from_str(stdout).expect("push --json");
    json.as_array()
        .expect("an array")
        .iter()
        .map(|host| {
            let field = |name: &str| host[name].as_str().unwrap_or("").to_owned();
            (
                field("host"),
                field("result"),
                field("batch"),
                field("reason"),
            )
        })
        .collect()
}

/// When a deploy ran on its host: its first phase's start to its end.
fn span(record: &DeployRecord) -> (u64, u64) {
    let start = record
        .phases
        .first()
        .map_or(record.created_at_ms, |phase| phase.started_at_ms);
    (start, record.finished_at_ms.expect("ended"))
}

/// The most deploys that ran at once.
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(other_start, other_end)| other_start <= start && start < other_end)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn batches_are_gated_on_the_hosts_own_verdicts() {
    let mut fleet = PushLab::up(6);
    let names: Vec<String> = hosts(&fleet).iter().map(|h| h.name.clone()).collect();
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    a_failed_canary_stops_the_rollout(&mut fleet, &names);
    batches_of_two_run_two_at_a_time_and_a_failure_stops_the_next(&mut fleet, &names);
    max_failures_lets_one_failure_through(&mut fleet, &names);
    batches_longer_than_a_message_lifetime_succeed(&mut fleet, &names);
}

fn a_failed_canary_stops_the_rollout(fleet: &mut PushLab, names: &[String]) {
    let before = last_deploys(fleet);
    let profiles: Vec<_> = hosts(fleet).iter().map(Node::profile_system).collect();
    let canary = &names[0];
    let rev = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(canary)
        .expect("commit");
    let output = fleet.push(&["--all", "--canary", "1", "--json", &rev]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("push: canary: {canary}")),
        "{stderr}"
    );
    let summary = summary(&stdout);
    assert_eq!(summary[0].0, *canary);
    assert_eq!(
        (summary[0].1.as_str(), summary[0].2.as_str()),
        ("rolled_back", "canary")
    );
    for (index, host) in hosts(fleet).iter().enumerate().skip(1) {
        let (name, result, batch, reason) = &summary[index];
        assert_eq!(name, &host.name);
        assert_eq!((result.as_str(), batch.as_str()), ("not_started", "1"));
        assert_eq!(reason, &format!("after canary {canary} failed"));
        // Untouched: no deploy started, the same profile.
        assert_eq!(last_deploys(fleet)[index], before[index], "{name}");
        assert_eq!(host.profile_system(), profiles[index], "{name}");
    }
    assert_ne!(last_deploys(fleet)[0], before[0]);
}

fn batches_of_two_run_two_at_a_time_and_a_failure_stops_the_next(
    fleet: &mut PushLab,
    names: &[String],
) {
    let failing = names[2].clone();
    let rev = fleet
        .lab
        .flake_mut()
        .commit(
            "Every system changes; the third's switch fails",
            |settings| {
                settings.label += 1;
                settings.fail_switch = vec![failing.clone()];
            },
        )
        .expect("commit");
    let before = last_deploys(fleet);
    let output = fleet.push(&["--all", "--batch", "2", "--json", &rev]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("push: batch 2 of 3: {}, {}", names[2], names[3])),
        "{stderr}"
    );
    let summary = summary(&stdout);
    let results: Vec<(&str, &str)> = summary
        .iter()
        .map(|(_, result, batch, _)| (result.as_str(), batch.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("succeeded", "1"),
            ("succeeded", "1"),
            ("rolled_back", "2"),
            ("succeeded", "2"),
            ("not_started", "3"),
            ("not_started", "3"),
        ],
        "{stdout}"
    );
    assert_eq!(summary[4].3, format!("after {failing} failed"));
    let hosts = hosts(fleet);
    let after = last_deploys(fleet);
    assert_eq!(after[4..], before[4..], "batch 3 was not started");
    // From the hosts' own records: two at a time, batch 2 after batch 1.
    let spans: Vec<(u64, u64)> = hosts[..4]
        .iter()
        .map(|host| span(&last_record(fleet, host)))
        .collect();
    assert_eq!(most_at_once(&spans), 2, "{spans:?}");
    let first_ended = spans[0].1.max(spans[1].1);
    assert!(
        spans[2].0 >= first_ended && spans[3].0 >= first_ended,
        "{spans:?}"
    );
}

fn max_failures_lets_one_failure_through(fleet: &mut PushLab, names: &[String]) {
    let failing = vec![names[1].clone(), names[3].clone()];
    let rev = fleet
        .lab
        .flake_mut()
        .commit("Two switches fail", |settings| {
            settings.label += 1;
            settings.fail_switch = failing.clone();
        })
        .expect("commit");
    let before = last_deploys(fleet);
    let output = fleet.push(&[
        "--all",
        "--batch",
        "1",
        "--max-failures",
        "1",
        "--json",
        &rev,
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let summary = summary(&stdout);
    let results: Vec<&str> = summary.iter().map(|host| host.1.as_str()).collect();
    assert_eq!(
        results,
        [
            "succeeded",
            "rolled_back",
            "succeeded",
            "rolled_back",
            "not_started",
            "not_started"
        ],
        "{stdout}"
    );
    assert_eq!(
        summary[5].3,
        format!(
            "after {} and {} failed: more than --max-failures 1",
            failing[0], failing[1]
        )
    );
    assert_eq!(last_deploys(fleet)[4..], before[4..]);
}

fn batches_longer_than_a_message_lifetime_succeed(fleet: &mut PushLab, names: &[String]) {
    fleet
        .lab
        .write_push_inventory("message_lifetime_s = 1")
        .expect("inventory");
    let rev = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let started = std::time::Instant::now();
    let output = fleet.push(&["--all", "--batch", "2", "--parallel", "1", "--json", &rev]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("expired") && !stderr.contains("expired"),
        "{stderr}"
    );
    assert!(started.elapsed() > std::time::Duration::from_secs(1));
    // Each host's message was signed (issued) after the host before it
    // ended: one group of one at a time, each signed when it starts.
    let records: Vec<DeployRecord> = hosts(fleet)
        .iter()
        .map(|host| last_record(fleet, host))
        .collect();
    for (index, pair) in records.windows(2).enumerate() {
        let ended_s = pair[0].finished_at_ms.expect("ended") / 1000;
        assert!(
            pair[1].issued_at >= ended_s,
            "{} was signed at {} before {} ended at {ended_s}",
            names[index + 1],
            pair[1].issued_at,
            names[index]
        );
        assert_eq!(pair[1].rev.as_ref().map(|r| r.as_str()), Some(rev.as_str()));
    }
    let first = records.first().expect("a host");
    let last = records.last().expect("a host");
    assert!(
        last.finished_at_ms.expect("ended") / 1000 > first.issued_at + 1,
        "the rollout outlasted one message's lifetime"
    );
}
