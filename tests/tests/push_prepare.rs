//! `push --prepare` against a lab of real deployd hosts: every host fetches
//! the new revision's system and roots it, switching nothing (a `prepare`
//! deploy in its records, the running system and profile as they were);
//! the next `push` of that revision has no `fetching` phase on any host and
//! the hosts' switches start close together (the spread, from the records,
//! is printed); and a prepared closure becomes collectable once another
//! revision lands.

mod support;

use deployd_lab::{Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::push::{system_at, text, PushLab};

/// The GC roots Nix knows for `path` on `host`.
fn roots_of(host: &Node, path: &str) -> String {
    let output = host
        .run(&["nix-store", "--query", "--roots", path])
        .unwrap_or_else(|error| panic!("the roots of {path} on {}: {error:#}", host.name));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `host`'s newest deploy of `system` with `action`.
fn newest(host: &Node, system: &str, action: Action) -> DeployRecord {
    let records = host.deploy_records().expect("records");
    records
        .into_iter()
        .filter(|record| record.store_path.as_str() == system && record.action == action)
        .max_by_key(|record| record.phases.first().map(|phase| phase.started_at_ms))
        .unwrap_or_else(|| panic!("a {action} deploy of {system} on {}", host.name))
}

/// The whole log of `record`'s deploy on `host`.
fn deploy_log(host: &Node, record: &DeployRecord) -> String {
    let file = host
        .outside(DEPLOYD_STATE_DIR)
        .join("deploys")
        .join(record.deploy_id.as_str())
        .join("log");
    std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()))
}

fn phase_started(record: &DeployRecord, state: DeployState) -> Option<u64> {
    record
        .phases
        .iter()
        .find(|phase| phase.state == state)
        .map(|phase| phase.started_at_ms)
}

fn push_ok(fleet: &PushLab, args: &[&str]) {
    let output = fleet.push(args);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "push {args:?}\n{stdout}\n{stderr}"
    );
}

#[test]
fn prepared_hosts_switch_without_fetching_and_release_what_they_kept() {
    let mut fleet = PushLab::up(3);
    let old = fleet.lab.flake().head().expect("head");
    push_ok(&fleet, &["--all", &old]);
    let hosts = fleet.lab.hosts().to_vec();
    let flake_dir = fleet.lab.flake().dir().to_owned();
    let system = |rev: &str, host: &Node| system_at(&flake_dir, rev, &host.name);

    // Prepare: fetched and rooted, nothing switched.
    let new = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let before: Vec<_> = hosts
        .iter()
        .map(|host| (host.current_system(), host.profile_generation()))
        .collect();
    push_ok(&fleet, &["--prepare", "--all", &new]);
    for (host, before) in hosts.iter().zip(&before) {
        let prepared = system(&new, host);
        let record = newest(host, &prepared, Action::Prepare);
        assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
        assert!(
            phase_started(&record, DeployState::Fetching).is_some(),
            "{record:?}"
        );
        assert!(
            phase_started(&record, DeployState::Activating).is_none(),
            "{record:?}"
        );
        host.run(&["nix-store", "--check-validity", &prepared])
            .expect("the prepared system is valid");
        let roots = roots_of(host, &prepared);
        assert!(
            roots.contains("/var/lib/deployd/gc-roots/prepared-"),
            "{}: {roots}",
            host.name
        );
        assert_eq!(
            &(host.current_system(), host.profile_generation()),
            before,
            "{} switched",
            host.name
        );
    }

    // The switch: no fetching anywhere, the activations close together.
    push_ok(&fleet, &["--all", &new]);
    let mut activating = Vec::new();
    for host in &hosts {
        let switched = system(&new, host);
        let record = newest(host, &switched, Action::Switch);
        assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
        assert_eq!(
            phase_started(&record, DeployState::Fetching),
            None,
            "{} fetched: {record:?}",
            host.name
        );
        let log = deploy_log(host, &record);
        assert!(log.contains("not fetching"), "{log}");
        activating.push(phase_started(&record, DeployState::Activating).expect("activating"));
        assert_eq!(host.current_system().as_deref(), Some(switched.as_str()));
    }
    let spread_ms =
        activating.iter().max().expect("hosts") - activating.iter().min().expect("hosts");
    println!("activations of the prepared revision started within {spread_ms} ms of each other");
    assert!(spread_ms < 1000, "spread {spread_ms} ms: {activating:?}");

    // Prepare a third revision, then land another one instead: its
    // closure is released and collectable; the second's prepared root
    // went with the third's prepare.
    let third = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    push_ok(&fleet, &["--prepare", "--all", &third]);
    for host in &hosts {
        let roots = roots_of(host, &system(&new, host));
        assert!(
            !roots.contains("gc-roots/prepared-"),
            "{}: {roots}",
            host.name
        );
        let roots = roots_of(host, &system(&third, host));
        assert!(
            roots.contains("gc-roots/prepared-"),
            "{}: {roots}",
            host.name
        );
    }
    push_ok(&fleet, &["--all", "--allow-downgrade", &old]);
    for host in &hosts {
        let dropped = system(&third, host);
        let roots = roots_of(host, &dropped);
        assert!(roots.trim().is_empty(), "{}: {roots}", host.name);
        host.run(&["nix-store", "--delete", &dropped])
            .unwrap_or_else(|error| panic!("{dropped} is collectable on {}: {error:#}", host.name));
        let record = newest(host, &system(&old, host), Action::Switch);
        let log = deploy_log(host, &record);
        assert!(log.contains("released the prepared closure"), "{log}");
    }
}
