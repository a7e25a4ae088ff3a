//! A host that cannot be reached still deploys from a push to the forge:
//! push.toml marks it `pull = true` (its host key pinned, the fleet's
//! channel push serve's own), so the real `push serve` does not call it
//! but publishes its deploy to its channel as the host's next desired
//! state, signed with its deploy key, and waits for the host's report.
//! The test plays that host with the protocol crate's types: it long-polls
//! the channel, verifies the state as a host does (`verify_desired`),
//! posts a report signed with its host key, and finds the report's result
//! on the commit (`pending` building, `pending` published, then `success`
//! or `failure`) and in `push status`. The other host is called as usual.
//! A pulling canary's failure stops the other hosts (the rollout waits for
//! its report); a report that comes after the rollout's wait still lands
//! on the commit.
//!
//! This test is the proof of push serve's side, the host played exactly;
//! the real daemon pulling from the real push serve (long polls, its
//! signed reports on the commit) is `pull_end_to_end.rs`.

mod support;

use std::time::{Duration, Instant};

use deployd_lab::forge::ForgeKind;
use deployd_lab::Node;
use deployd_protocol::api::DeployRecord;
use deployd_protocol::{
    DesiredArrival, HostReport, MemoryNonceStore, Permission, Permissions, Request, SecretKey,
    SystemClock, TrustedKey, TrustedKeys, VerifiedDesired, Verifier, DEFAULT_MAX_DESIRED_AGE_S,
};
use support::deployd::{key, now, status};
use support::forge::{states_of, ForgeFleet};
use support::push::system_at;

/// The pulling host as the test plays it: its name, its host key, and
/// what it trusts (push serve's key, `ci-1`, may deploy).
struct PullingHost {
    name: String,
    host_key: SecretKey,
    verifier: Verifier,
    channel: String,
}

impl PullingHost {
    /// Long-polls its state above `after` until one comes (a `404` while
    /// push serve has not read push.toml yet is asked again); the bytes and
    /// when they came.
    fn long_poll(&self, after: u64, within: Duration) -> (Vec<u8>, Instant) {
        let url = format!(
            "{}/hosts/{}.json?after={after}&wait=60",
            self.channel, self.name
        );
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client");
        let deadline = Instant::now() + within;
        loop {
            assert!(
                Instant::now() < deadline,
                "no state above {after} within {within:?}"
            );
            let answer = client.get(&url).send().expect("the channel answers");
            assert_eq!(
                answer
                    .headers()
                    .get("deployd-channel")
                    .map(|value| value.to_str().expect("text")),
                Some("push-serve")
            );
            match answer.status().as_u16() {
                200 => return (answer.bytes().expect("body").to_vec(), Instant::now()),
                304 | 404 => std::thread::sleep(Duration::from_millis(200)),
                other => panic!("the channel answered {other}: {:?}", answer.text()),
            }
        }
    }

    /// Verifies `bytes` as the host does.
    fn verify(&self, bytes: &[u8], last_sequence: Option<u64>) -> VerifiedDesired {
        let arrival = DesiredArrival {
            last_sequence,
            active_issued_at: None,
            max_age_s: DEFAULT_MAX_DESIRED_AGE_S,
        };
        self.verifier
            .verify_desired(bytes, &arrival, &mut MemoryNonceStore::default())
            .expect("a state the host accepts")
    }

    /// Posts its report that the deploy of `state` ended `state_name`.
    fn report(&self, state: &VerifiedDesired, ended: &str, error: serde_json::Value) -> u16 {
        let Request::Deploy(deploy) = &state.verified.message.request else {
            panic!("a desired state is a deploy");
        };
        let record: DeployRecord = serde_json::from_value(serde_json::json!({
            "deploy_id": deploy.deploy_id, "host": self.name,
            "store_path": deploy.store_path, "action": "switch", "flake": deploy.flake,
            "rev": deploy.rev, "key": state.verified.key,
            "issued_at": state.verified.message.issued_at, "state": ended, "phases": [],
            "error": error, "previous_system": null, "reboot_required": false,
            "log_tail": [], "created_at_ms": now() * 1000,
            "finished_at_ms": now() * 1000,
        }))
        .expect("a record");
        assert!(record.state.is_final());
        let report = HostReport {
            host: self.name.parse().expect("host"),
            sent_at: now(),
            sequence: Some(state.sequence),
            record,
        };
        let answer = reqwest::blocking::Client::new()
            .post(format!("{}/reports/{}", self.channel, self.name))
            .body(report.sign(&self.host_key).to_json())
            .send()
            .expect("the report is taken");
        answer.status().as_u16()
    }
}

/// Two hosts and push serve following `main` with both: the first is
/// called, the second pulls (the test plays it).
fn pulling_fleet() -> (ForgeFleet, Node, Node, PullingHost) {
    let fleet = ForgeFleet::up(2, ForgeKind::Forgejo);
    let hosts = fleet.lab.hosts().to_vec();
    let (called, pulling) = (hosts[0].clone(), hosts[1].clone());
    let host_key = key(&format!("{}-host-1", pulling.name));
    fleet.mark_as_pulling(&pulling, &host_key.public_key().to_string());
    let ci = SecretKey::load(&fleet.service_file("ci-1.secret")).expect("ci-1");
    let trusted = TrustedKeys::new([TrustedKey {
        key: ci.public_key(),
        may: Permissions::NONE.with(Permission::Deploy),
    }])
    .expect("keys");
    let host = PullingHost {
        name: pulling.name.clone(),
        verifier: Verifier::new(
            trusted,
            pulling.name.parse().expect("host"),
            Box::new(SystemClock),
        ),
        host_key,
        channel: format!("{}/v1/channel", fleet.url()),
    };
    (fleet, called, pulling, host)
}

#[test]
fn push_serve_publishes_for_a_pulling_host_and_its_report_lands_on_the_commit() {
    let (mut fleet, called, pulling, host) = pulling_fleet();
    let (called, pulling) = (&called, &pulling);

    // The first push: published as state 1; the host reports success.
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let (bytes, _) = host.long_poll(0, Duration::from_secs(180));
    let state = host.verify(&bytes, None);
    assert_eq!(state.sequence, 1);
    assert_eq!(state.verified.key.as_str(), "ci-1");
    let Request::Deploy(deploy) = &state.verified.message.request else {
        panic!("a deploy");
    };
    assert_eq!(
        deploy.rev.as_ref().map(|rev| rev.as_str()),
        Some(first.as_str())
    );
    let expected = system_at(fleet.lab.flake().dir(), &first, &pulling.name);
    assert_eq!(deploy.store_path.as_str(), expected);
    let window = state.verified.message.expires_at - state.verified.message.issued_at;
    assert_eq!(window, DEFAULT_MAX_DESIRED_AGE_S);
    assert_eq!(
        host.report(&state, "succeeded", serde_json::Value::Null),
        204
    );
    let statuses = fleet.wait_for_final_statuses(&first, Duration::from_secs(120));
    assert_eq!(
        states_of(&statuses, &pulling.name),
        ["pending", "pending", "success"],
        "{statuses:#?}"
    );
    let mine: Vec<_> = statuses
        .iter()
        .filter(|status| status.context == format!("deployd/{}", pulling.name))
        .collect();
    assert_eq!(
        mine[1].description.as_deref(),
        Some("published (desired state 1)")
    );
    assert_eq!(mine[2].description.as_deref(), Some("deployed"));
    assert_eq!(
        states_of(&statuses, &called.name)
            .last()
            .map(String::as_str),
        Some("success")
    );
    // Nobody called the pulling host (its deployd runs, and saw no deploy).
    assert_eq!(status(&fleet.lab, pulling).current_deploy, None);
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["outcome"], "succeeded", "{service}");

    // The second push, while the host long-polls: answered as soon as the
    // state is published.
    let waiting = {
        let (name, channel) = (host.name.clone(), host.channel.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("client");
            let url = format!("{channel}/hosts/{name}.json?after=1&wait=60");
            // The build takes a few seconds; a 304 after a minute asks again.
            loop {
                let answer = client.get(&url).send().expect("the channel answers");
                if answer.status().as_u16() == 200 {
                    return (answer.bytes().expect("body").to_vec(), Instant::now());
                }
                assert_eq!(answer.status().as_u16(), 304);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let hooked = Instant::now();
    let (second, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    let (bytes, answered_at) = waiting.join().expect("the long poll");
    let state = host.verify(&bytes, Some(1));
    assert_eq!(state.sequence, 2);
    // The host tells it rolled back.
    let failure = serde_json::json!({"code": "activation_failed", "message": "switch-to-configuration exited 2"});
    assert_eq!(host.report(&state, "rolled_back", failure), 204);
    let statuses = fleet.wait_for_final_statuses(&second, Duration::from_secs(120));
    let published = statuses
        .iter()
        .find(|status| {
            status.context == format!("deployd/{}", pulling.name)
                && status.description.as_deref() == Some("published (desired state 2)")
        })
        .expect("a published status");
    let to_answer = answered_at.duration_since(hooked);
    let to_status = published.at.duration_since(hooked);
    eprintln!(
        "hook to the long poll's answer {:.2}s (the build included); hook to the `published` status {:.2}s: the long poll was answered {:.2}s after the status call",
        to_answer.as_secs_f64(),
        to_status.as_secs_f64(),
        to_answer.as_secs_f64() - to_status.as_secs_f64()
    );
    // The state is published before its status is posted (in the
    // background): the long poll is not answered later than a second after.
    assert!(
        to_answer <= to_status + Duration::from_secs(1),
        "{to_answer:?} {to_status:?}"
    );
    let last = statuses
        .iter()
        .rev()
        .find(|status| status.context == format!("deployd/{}", pulling.name))
        .expect("a status");
    assert_eq!(last.state, "failure", "{last:?}");
    let description = last.description.clone().unwrap_or_default();
    assert!(description.contains("activation_failed"), "{description}");
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["outcome"], "failed", "{service}");
    let entry = service["pulling"]
        .as_array()
        .and_then(|hosts| {
            hosts
                .iter()
                .find(|entry| entry["host"] == pulling.name.as_str())
        })
        .expect("the pulling host in the status")
        .clone();
    assert_eq!(entry["held"]["sequence"], 2, "{service}");
    assert_eq!(entry["held"]["rev"], second.as_str());
    assert_eq!(entry["report"]["state"], "rolled_back");

    // push status reads the host's report from the channel.
    let output = fleet
        .lab
        .push_command(
            &fleet.service_file("ci-1.secret"),
            &fleet.service_file("push-status-state"),
        )
        .expect("push")
        .args(["status"])
        .output()
        .expect("push status");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let row = |name: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let pulled = row(&pulling.name);
    assert_eq!(pulled[1], second[..12], "{stdout}");
    assert_eq!(pulled[3], "rolled_back", "{stdout}");
    assert_eq!(pulled[7], "pull", "{stdout}");
    assert!(pulled[8..].join(" ").starts_with("reported "), "{stdout}");
    let reached = row(&called.name);
    assert_eq!(reached[1], second[..12], "{stdout}");
    assert_eq!(reached[3], "succeeded", "{stdout}");
    eprintln!("{stdout}");
}

#[test]
fn a_pulling_canary_that_reports_a_failure_stops_the_other_hosts() {
    let (mut fleet, called, pulling, host) = pulling_fleet();
    fleet.follow_with(&format!("canary = \"{}\"", pulling.name));
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let (bytes, _) = host.long_poll(0, Duration::from_secs(180));
    let state = host.verify(&bytes, None);
    // The called host waits for the canary's report: nothing was sent to it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&fleet.lab, &called).current_deploy, None);
    let failure = serde_json::json!({"code": "activation_failed", "message": "switch-to-configuration exited 2"});
    assert_eq!(host.report(&state, "rolled_back", failure), 204);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    let last = |name: &str| {
        statuses
            .iter()
            .rev()
            .find(|status| status.context == format!("deployd/{name}"))
            .expect("a status")
            .clone()
    };
    assert_eq!(last(&pulling.name).state, "failure");
    let stopped = last(&called.name);
    assert_eq!(stopped.state, "error", "{stopped:?}");
    let why = stopped.description.unwrap_or_default();
    assert!(
        why.contains("not started") && why.contains(&pulling.name),
        "{why}"
    );
    assert_eq!(status(&fleet.lab, &called).current_deploy, None);
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["outcome"], "failed", "{service}");
}

#[test]
fn a_report_after_the_rollouts_wait_still_lands_on_the_commit() {
    let (mut fleet, _called, pulling, host) = pulling_fleet();
    fleet.follow_with("[channel]\nreport_wait_s = 1");
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let (bytes, _) = host.long_poll(0, Duration::from_secs(180));
    let state = host.verify(&bytes, None);
    // The rollout ends without the host's word: `published`.
    let ended = support::wait_until(Duration::from_secs(60), || {
        !fleet.service_status()["recent"][0].is_null()
    });
    assert!(ended, "{}", fleet.service_log());
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["outcome"], "published", "{service}");
    let context = format!("deployd/{}", pulling.name);
    let mine = |fleet: &ForgeFleet| -> Vec<(String, String)> {
        fleet
            .forge
            .statuses()
            .into_iter()
            .filter(|status| status.sha == rev && status.context == context)
            .map(|status| (status.state, status.description.unwrap_or_default()))
            .collect()
    };
    let posted = support::wait_until(Duration::from_secs(10), || mine(&fleet).len() == 3);
    assert!(posted, "{:?}", mine(&fleet));
    assert_eq!(
        mine(&fleet)[2],
        (
            "pending".to_owned(),
            "published; waiting for its report".to_owned()
        )
    );
    // The report comes later: it is put on the commit as it arrives.
    assert_eq!(
        host.report(&state, "succeeded", serde_json::Value::Null),
        204
    );
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(30));
    assert_eq!(
        states_of(&statuses, &pulling.name),
        ["pending", "pending", "pending", "success"]
    );
}
