//! A deploy whose closure cannot be fetched ends `failed` with a clear
//! message, and nothing on the host changed: a closure signed only by a key
//! the host does not trust, a path the cache lacks, the cache going down in
//! the middle of the download.

mod support;

use std::time::Duration;

use deployd_lab::{Lab, Node};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::deployd::{
    deploy, deploy_message, key, slow_to_fetch, start_fleet, trusted, wait_for_end, wait_for_state,
};
use support::lab_options;

/// The host as a failed fetch must leave it: no generation, nothing running,
/// no switch run.
fn assert_untouched(host: &Node) {
    assert_eq!(host.profile_generation(), None);
    assert_eq!(host.current_system(), None);
    assert!(host.switch_log().expect("switch log").is_empty());
}

fn assert_fetch_failed(record: &DeployRecord, expected: &str) {
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.as_ref().expect("an error");
    assert_eq!(error.code, "fetch_failed");
    assert!(error.message.contains(expected), "{}", error.message);
    assert!(!record
        .phases
        .iter()
        .any(|p| p.state == DeployState::Activating));
}

fn build(lab: &Lab, host: &Node) -> String {
    let rev = lab.flake().head().expect("head");
    let installable = lab.flake().installable(&rev, &host.name);
    let built = lab
        .builder()
        .run(&["nix", "build", "--no-link", "--json", &installable])
        .expect("build");
    let built: serde_json::Value = serde_json::from_slice(&built.stdout).expect("json");
    built[0]["outputs"]["out"].as_str().expect("out").to_owned()
}

#[test]
fn a_closure_signed_by_an_untrusted_key_is_refused() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let system = build(&lab, &host);
    let rogue = lab.dir().join("keys/rogue.secret");
    lab.builder()
        .run(&[
            "nix-store",
            "--generate-binary-cache-key",
            "rogue-1",
            rogue.to_str().expect("utf-8"),
            lab.dir().join("keys/rogue.public").to_str().expect("utf-8"),
        ])
        .expect("rogue key");
    lab.publish_signed_by(&[&system], &rogue).expect("publish");

    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "rogue", &system, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_fetch_failed(&record, "not signed by any of the keys");
    assert!(
        !host.outside(&system).exists(),
        "the unsigned path entered the store"
    );
    assert_untouched(&host);
}

#[test]
fn a_path_the_cache_lacks_fails() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let system = build(&lab, &host);
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "missing", &system, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_fetch_failed(&record, "fetching");
    assert_untouched(&host);
}

#[test]
fn the_cache_going_down_mid_fetch_fails() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let system = slow_to_fetch(&mut lab, &host);

    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "cut", &system, Action::Switch),
        &ops,
    );
    wait_for_state(&lab, &host, &id, "fetching", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    lab.stop_cache().expect("cache down");
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(120));
    assert_fetch_failed(&record, "unable to download");
    // The download had begun when the cache went down.
    let log = std::fs::read_to_string(host.outside(&format!("/var/lib/deployd/deploys/{id}/log")))
        .expect("log");
    assert!(log.contains("copying path"), "{log}");
    assert!(
        !host.outside(&system).exists(),
        "the system got into the store"
    );
    assert_untouched(&host);
}
