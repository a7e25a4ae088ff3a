//! deployd's fast fetch on a real host: the closure walked from the lab's
//! cache into a stage, then realised by Nix from it. Nix keeps every check
//! (a closure signed by a key the host does not trust still fails, and
//! nothing of it becomes valid); a connection cut in the middle of a NAR is
//! tried again; memory stays bounded on a closure of 2,000 paths; and Nix
//! really fetches from the stage. A closure of few paths is left to Nix
//! alone: no stage, and Nix fetches from the cache.

mod support;

use std::time::Duration;

use deployd_lab::http::Pace;
use deployd_lab::{BulkPaths, Lab, Node};
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::deployd::{deploy, deploy_message, wait_for_end, OneHost};

/// The host's log of deploy `id`.
fn deploy_log(host: &Node, id: &str) -> String {
    std::fs::read_to_string(host.outside(&format!("/var/lib/deployd/deploys/{id}/log")))
        .expect("log")
}

/// The closure of `system`, as the builder's store has it.
fn closure(lab: &Lab, system: &str) -> Vec<String> {
    let listed = lab
        .builder()
        .run(&["nix-store", "--query", "--requisites", system])
        .expect("closure");
    String::from_utf8(listed.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Which of `paths` are not valid in `host`'s store.
fn invalid_on(host: &Node, paths: &[String]) -> Vec<String> {
    let mut argv = vec!["nix-store", "--check-validity", "--print-invalid"];
    argv.extend(paths.iter().map(String::as_str));
    let answer = host.run(&argv).expect("check validity");
    String::from_utf8(answer.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Deploys `system` as `id` and waits for its end (at most `timeout`).
fn deploy_and_wait(fleet: &OneHost, id: &str, system: &str, timeout: Duration) -> DeployRecord {
    let id = deploy(
        &fleet.lab,
        &fleet.host,
        &deploy_message(&fleet.host, id, system, Action::Switch),
        &fleet.ops,
    );
    wait_for_end(&fleet.lab, &fleet.host, &id, timeout)
}

/// What shows the fast fetch staged the closure and Nix took it from
/// there: the final progress line says every path found was fetched, and
/// Nix copied paths from the stage (a `file://` cache).
fn assert_fetched_through_the_stage(log: &str) {
    let last = log
        .lines()
        .rev()
        .find(|line| line.starts_with("deployd: fetched "))
        .unwrap_or_else(|| panic!("no progress line: {log}"));
    let counts: Vec<&str> = last
        .trim_start_matches("deployd: fetched ")
        .split([' ', ','])
        .collect();
    assert_eq!(counts[0], counts[2], "not every path was staged: {log}");
    assert_ne!(counts[0], "0", "{log}");
    assert!(
        log.contains("from 'file:///var/lib/deployd/fetch/"),
        "Nix did not copy from the stage: {log}"
    );
    assert!(!log.contains("fast fetch stopped"), "{log}");
}

#[test]
fn a_closure_signed_by_an_untrusted_key_fails_and_nothing_of_it_is_valid() {
    let mut fleet = OneHost::up();
    // Built, never signed by the lab's key: published signed only by a key
    // the host does not trust.
    let rev = fleet
        .lab
        .flake_mut()
        .commit_large_closure(BulkPaths {
            // More than the few paths left to Nix alone: staged.
            paths: 20,
            bytes_per_path: 10_000,
            levels: 1,
        })
        .expect("commit");
    let installable = fleet.lab.flake().installable(&rev, &fleet.host.name);
    let built = fleet
        .lab
        .builder()
        .run(&["nix", "build", "--no-link", "--json", &installable])
        .expect("build");
    let built: serde_json::Value = serde_json::from_slice(&built.stdout).expect("json");
    let system = built[0]["outputs"]["out"].as_str().expect("out").to_owned();
    let rogue = fleet.lab.dir().join("keys/rogue.secret");
    fleet
        .lab
        .builder()
        .run(&[
            "nix-store",
            "--generate-binary-cache-key",
            "rogue-1",
            rogue.to_str().expect("utf-8"),
            fleet
                .lab
                .dir()
                .join("keys/rogue.public")
                .to_str()
                .expect("utf-8"),
        ])
        .expect("rogue key");
    fleet
        .lab
        .publish_signed_by(&[&system], &rogue)
        .expect("publish");
    let closure = closure(&fleet.lab, &system);
    let missing_before = invalid_on(&fleet.host, &closure);
    assert!(missing_before.contains(&system));

    let record = deploy_and_wait(&fleet, "rogue", &system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let error = record.error.as_ref().expect("an error");
    assert_eq!(error.code, "fetch_failed", "{error:?}");
    let log = deploy_log(&fleet.host, "rogue");
    // The fast fetch staged the closure; Nix refused it.
    assert!(log.contains("deployd: fetched "), "{log}");
    assert_eq!(
        invalid_on(&fleet.host, &missing_before),
        missing_before,
        "a path signed by an untrusted key became valid"
    );
    assert!(!fleet.host.outside("/var/lib/deployd/fetch/rogue").exists());
}

#[test]
fn connections_cut_in_the_middle_of_nars_are_tried_again() {
    let mut fleet = OneHost::up();
    let system = fleet.commit_system(|flake, _| {
        flake.commit_large_closure(BulkPaths {
            paths: 10,
            bytes_per_path: 200_000,
            levels: 2,
        })
    });
    fleet.lab.stop_cache().expect("stop cache");
    fleet
        .lab
        .start_cache(Pace {
            cut_first_nars: 4,
            ..Pace::default()
        })
        .expect("cutting cache");

    let record = deploy_and_wait(&fleet, "cut", &system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let log = deploy_log(&fleet.host, "cut");
    let retries = log
        .lines()
        .filter(|line| line.contains("trying again"))
        .count();
    assert_eq!(retries, 4, "{log}");
    assert_fetched_through_the_stage(&log);
    assert!(!fleet.host.outside("/var/lib/deployd/fetch/cut").exists());
}

#[test]
fn memory_stays_bounded_on_a_closure_of_2000_paths() {
    let mut fleet = OneHost::up();
    let system = fleet.commit_system(|flake, _| {
        flake.commit_large_closure(BulkPaths {
            paths: 2000,
            bytes_per_path: 5_000,
            levels: 10,
        })
    });
    let record = deploy_and_wait(&fleet, "large", &system, Duration::from_secs(600));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let log = deploy_log(&fleet.host, "large");
    assert_fetched_through_the_stage(&log);
    let paths = closure(&fleet.lab, &system).len();
    assert!(paths > 2000, "{paths} paths");
    // The daemon's peak: its process's high-water mark of resident memory,
    // read inside the host (the pid is the host's PID namespace's).
    let pid = fleet.lab.deployd_pid(&fleet.host).expect("deployd pid");
    let read = fleet
        .host
        .command("cat", [format!("/proc/{pid}/status")])
        .output()
        .expect("cat on the host");
    assert!(read.status.success(), "{read:?}");
    let status = String::from_utf8(read.stdout).expect("utf-8");
    assert!(
        status.lines().any(|line| line == "Name:\tdeployd"),
        "pid {pid} is not deployd: {status}"
    );
    let peak_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    println!(
        "deployd's peak RSS fetching {paths} paths: {} MB",
        peak_kb / 1000
    );
    assert!(peak_kb < 200_000, "deployd's peak RSS is {peak_kb} kB");
}

#[test]
fn a_closure_of_few_paths_is_fetched_by_nix_without_a_stage() {
    let mut fleet = OneHost::up();
    let system = fleet.commit_system(|flake, _| {
        flake.commit_large_closure(BulkPaths {
            paths: 1,
            bytes_per_path: 10_000,
            levels: 1,
        })
    });
    let closure = closure(&fleet.lab, &system);
    let missing = invalid_on(&fleet.host, &closure).len();
    assert!((1..=16).contains(&missing), "{missing} paths missing");

    let record = deploy_and_wait(&fleet, "few", &system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let log = deploy_log(&fleet.host, "few");
    assert!(
        log.contains(&format!(
            "deployd: {missing} paths to fetch, no more than Nix fetches at once: \
             Nix fetches them itself, without a stage"
        )),
        "{log}"
    );
    assert!(!log.contains("deployd: fetched "), "{log}");
    assert!(!log.contains("/var/lib/deployd/fetch/"), "{log}");
    assert!(!log.contains("fast fetch stopped"), "{log}");
    assert!(!fleet.host.outside("/var/lib/deployd/fetch").exists());
    assert!(invalid_on(&fleet.host, &closure).is_empty());
}
