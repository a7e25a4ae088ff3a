//! A host does not cling to what a cache told it before: once an operator
//! mends the cache (publishes a missing path, re-signs paths with a key the
//! host trusts, rotates the cache key), the very next deploy fetches what the
//! cache says now, not what Nix remembered of it.

mod support;

use deployd_lab::{BulkPaths, Lab, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::deployd::{trusted, OneHost};

fn build(lab: &Lab, host: &str) -> String {
    let rev = lab.flake().head().expect("head");
    let installable = lab.flake().installable(&rev, host);
    let built = lab
        .builder()
        .run(&["nix", "build", "--no-link", "--json", &installable])
        .expect("build");
    let built: serde_json::Value = serde_json::from_slice(&built.stdout).expect("json");
    built[0]["outputs"]["out"].as_str().expect("out").to_owned()
}

fn assert_fetch_failed(record: &DeployRecord, expected: &str) {
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.as_ref().expect("an error");
    assert_eq!(error.code, "fetch_failed", "{error:?}");
    assert!(error.message.contains(expected), "{}", error.message);
}

fn assert_deployed(fleet: &OneHost, record: &DeployRecord, system: &str) {
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(fleet.host.current_system().as_deref(), Some(system));
}

/// A key the host does not trust, in the lab's key directory.
fn rogue_key(lab: &Lab) -> std::path::PathBuf {
    let secret = lab.dir().join("keys/rogue.secret");
    let public = lab.dir().join("keys/rogue.public");
    lab.builder()
        .run(&[
            "nix-store",
            "--generate-binary-cache-key",
            "rogue-1",
            secret.to_str().expect("utf-8"),
            public.to_str().expect("utf-8"),
        ])
        .expect("rogue key");
    secret
}

#[test]
fn a_path_published_after_a_failed_fetch_is_fetched() {
    let fleet = OneHost::up();
    let system = build(&fleet.lab, &fleet.host.name);
    let record = fleet.deploy_to_end("before", &system, Action::Switch);
    assert_fetch_failed(&record, "fetching");

    fleet.lab.publish(&[&system]).expect("publish");
    let record = fleet.deploy_to_end("after", &system, Action::Switch);
    assert_deployed(&fleet, &record, &system);
}

#[test]
fn a_path_re_signed_with_a_trusted_key_after_a_failed_fetch_is_fetched() {
    let mut fleet = OneHost::up();
    // More paths than the fast fetch leaves to Nix alone: it stages them.
    fleet
        .lab
        .flake_mut()
        .commit_large_closure(BulkPaths {
            paths: 20,
            bytes_per_path: 1_000,
            levels: 1,
        })
        .expect("commit");
    let log = fetch_after_re_signing(&fleet);
    // The fast fetch reads every narinfo afresh from the cache into the
    // deploy's own stage: Nix took the re-signed one from there at once.
    assert!(
        log.contains("file:///var/lib/deployd/fetch/re-signed"),
        "{log}"
    );
    assert!(!log.contains("fast fetch stopped"), "{log}");
}

#[test]
fn a_path_re_signed_in_a_closure_of_few_paths_is_fetched_by_nix() {
    // The toy system's few paths: the fast fetch leaves them to Nix, which
    // remembered the old signature; the fetch asked afresh got the new.
    let fleet = OneHost::up();
    let log = fetch_after_re_signing(&fleet);
    assert!(
        log.contains("Nix fetches them itself, without a stage"),
        "{log}"
    );
    assert!(!log.contains("/var/lib/deployd/fetch/"), "{log}");
    assert!(log.contains("asking the caches everything afresh"), "{log}");
}

#[test]
fn a_path_re_signed_after_a_failed_fetch_is_fetched_by_nix_alone() {
    // Appended to the lab's `[nix]` table: Nix's own substitution only.
    let fleet = OneHost::with_config("fast_fetch = false\n");
    let log = fetch_after_re_signing(&fleet);
    // Nix remembered the old signature; the fetch asked afresh got the new.
    assert!(!log.contains("/var/lib/deployd/fetch/"), "{log}");
    assert!(log.contains("asking the caches everything afresh"), "{log}");
}

/// Publishes the host's system signed by an untrusted key (the deploy
/// fails), re-signs it with the trusted one (the next succeeds), and
/// returns the second deploy's log.
fn fetch_after_re_signing(fleet: &OneHost) -> String {
    let system = build(&fleet.lab, &fleet.host.name);
    let rogue = rogue_key(&fleet.lab);
    fleet
        .lab
        .publish_signed_by(&[&system], &rogue)
        .expect("publish");
    let record = fleet.deploy_to_end("unsigned", &system, Action::Switch);
    assert_fetch_failed(&record, "not signed by any of the keys");

    fleet.lab.sign_in_cache(&[&system]).expect("re-sign");
    let record = fleet.deploy_to_end("re-signed", &system, Action::Switch);
    assert_deployed(fleet, &record, &system);
    std::fs::read_to_string(
        fleet
            .host
            .outside(&format!("{DEPLOYD_STATE_DIR}/deploys/re-signed/log")),
    )
    .expect("deploy log")
}

#[test]
fn a_rotated_cache_key_is_used_at_once() {
    let mut fleet = OneHost::up();
    let system = fleet.head_system();
    // The operator rotates the key: hosts first, then the cache.
    fleet.lab.rotate_cache_key("lab-builder-2").expect("rotate");
    let host = fleet.host.clone();
    fleet
        .lab
        .write_deployd_config(&host, &[trusted(&fleet.ops, None)], "")
        .expect("config");
    fleet.lab.stop_deployd(&host).expect("stop deployd");
    fleet.lab.start_deployd(&host).expect("deployd up");
    let record = fleet.deploy_to_end("old-key", &system, Action::Switch);
    assert_fetch_failed(&record, "not signed by any of the keys");

    fleet.lab.sign_in_cache(&[&system]).expect("re-sign");
    let record = fleet.deploy_to_end("new-key", &system, Action::Switch);
    assert_deployed(&fleet, &record, &system);
}
