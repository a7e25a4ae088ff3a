//! The quarantine window: an ending within it quarantines, outside it does
//! not, 0 turns it off, only `failed` and `rolled_back` count, the newest
//! ending of a path decides, and the index stays bounded.

use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::{Action, StorePath};

use super::{QuarantineIndex, MAX_QUARANTINED};

const HOUR_MS: u64 = 3600 * 1000;
const DAY_S: u64 = 24 * 3600;

/// A distinct store path for each `n` (its hash spells `n` in Nix's base32).
fn path(n: usize) -> StorePath {
    const DIGITS: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut hash = vec![b'0'; 32];
    let mut rest = n;
    for slot in hash.iter_mut().rev() {
        *slot = DIGITS[rest % 32];
        rest /= 32;
    }
    let hash = String::from_utf8(hash).expect("ASCII");
    format!("/nix/store/{hash}-nixos-system-h")
        .parse()
        .expect("store path")
}

fn ended(id: &str, n: usize, state: DeployState, at_ms: u64) -> DeployRecord {
    DeployRecord {
        deploy_id: id.parse().expect("id"),
        host: "h".parse().expect("host"),
        store_path: path(n),
        action: Action::Switch,
        flake: None,
        rev: None,
        key: "k".parse().expect("key"),
        issued_at: 0,
        state,
        phases: Vec::new(),
        error: None,
        previous_system: None,
        reboot_required: false,
        log_tail: Vec::new(),
        created_at_ms: at_ms,
        finished_at_ms: state.is_final().then_some(at_ms),
    }
}

#[test]
fn an_ending_within_the_window_quarantines_and_outside_it_does_not() {
    let mut index = QuarantineIndex::default();
    index.observe(&ended("d1", 1, DeployState::RolledBack, 10 * HOUR_MS));
    let within = index
        .find(&path(1), 20 * HOUR_MS, DAY_S)
        .expect("quarantined 10 hours later");
    assert_eq!(within.deploy_id.as_str(), "d1");
    assert_eq!(within.state, DeployState::RolledBack);
    assert_eq!(within.ended_at_ms, 10 * HOUR_MS);
    assert_eq!(within.until_ms, 34 * HOUR_MS);
    assert!(index.find(&path(1), 34 * HOUR_MS, DAY_S).is_none());
    assert!(index.find(&path(1), 40 * HOUR_MS, DAY_S).is_none());
    assert!(index.find(&path(2), 20 * HOUR_MS, DAY_S).is_none());
}

#[test]
fn zero_turns_quarantine_off() {
    let mut index = QuarantineIndex::default();
    index.observe(&ended("d1", 1, DeployState::Failed, HOUR_MS));
    assert!(index.find(&path(1), HOUR_MS, 0).is_none());
    assert!(index.list(HOUR_MS, 0).is_empty());
    assert!(index.find(&path(1), HOUR_MS, 60).is_some());
}

#[test]
fn only_failed_and_rolled_back_endings_quarantine() {
    let mut index = QuarantineIndex::default();
    let states = [
        DeployState::Received,
        DeployState::Fetching,
        DeployState::Activating,
        DeployState::AwaitingConfirm,
        DeployState::CheckingHealth,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::RolledBack,
    ];
    for (n, state) in states.into_iter().enumerate() {
        index.observe(&ended(&format!("d{n}"), n, state, HOUR_MS));
    }
    let listed: Vec<DeployState> = index
        .list(HOUR_MS, DAY_S)
        .into_iter()
        .map(|entry| entry.state)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&DeployState::Failed));
    assert!(listed.contains(&DeployState::RolledBack));
}

#[test]
fn the_newest_ending_of_a_path_decides() {
    let mut index = QuarantineIndex::default();
    index.observe(&ended("d1", 1, DeployState::Failed, HOUR_MS));
    index.observe(&ended("d2", 1, DeployState::RolledBack, 2 * HOUR_MS));
    let entry = index
        .find(&path(1), 3 * HOUR_MS, DAY_S)
        .expect("quarantined");
    assert_eq!(entry.deploy_id.as_str(), "d2");
    // An older record seen again (a save of its log tail) changes nothing.
    index.observe(&ended("d1", 1, DeployState::Failed, HOUR_MS));
    let entry = index
        .find(&path(1), 3 * HOUR_MS, DAY_S)
        .expect("quarantined");
    assert_eq!(entry.deploy_id.as_str(), "d2");
    // A dry-activate that succeeds changed nothing: still quarantined.
    let mut dry = ended("d3", 1, DeployState::Succeeded, 3 * HOUR_MS);
    dry.action = Action::DryActivate;
    index.observe(&dry);
    assert!(index.find(&path(1), 3 * HOUR_MS, DAY_S).is_some());
    // A retry that succeeds ends the quarantine.
    index.observe(&ended("d4", 1, DeployState::Succeeded, 4 * HOUR_MS));
    assert!(index.find(&path(1), 4 * HOUR_MS, DAY_S).is_none());
}

#[test]
fn a_prepare_neither_quarantines_nor_ends_a_quarantine() {
    let mut index = QuarantineIndex::default();
    let mut failed_prepare = ended("p1", 1, DeployState::Failed, HOUR_MS);
    failed_prepare.action = Action::Prepare;
    index.observe(&failed_prepare);
    assert!(index.find(&path(1), HOUR_MS, DAY_S).is_none());
    index.observe(&ended("d1", 1, DeployState::RolledBack, 2 * HOUR_MS));
    let mut prepared = ended("p2", 1, DeployState::Succeeded, 3 * HOUR_MS);
    prepared.action = Action::Prepare;
    index.observe(&prepared);
    assert!(index.find(&path(1), 3 * HOUR_MS, DAY_S).is_some());
}

#[test]
fn the_index_is_bounded_and_forgets_the_oldest_first() {
    let mut index = QuarantineIndex::default();
    for n in 0..MAX_QUARANTINED + 10 {
        index.observe(&ended(&format!("d{n}"), n, DeployState::Failed, n as u64));
    }
    let listed = index.list(0, DAY_S);
    assert_eq!(listed.len(), MAX_QUARANTINED);
    assert_eq!(
        listed[0].deploy_id.to_string(),
        format!("d{}", MAX_QUARANTINED + 9)
    );
    assert!(index.find(&path(0), 0, DAY_S).is_none());
    assert!(index.find(&path(10), 0, DAY_S).is_some());
}
