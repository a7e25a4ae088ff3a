//! Hosts that nobody can reach, deployed end to end (docs/src/design/channels.md):
//! the real deployd, listening on its host's loopback only, pulls what the
//! real `push publish` and `push serve` write.
//!
//! Shown: `push publish` to an S3 bucket on a real S3-compatible server
//! (moto, on the lab's bridge) switches a host that pulls from the
//! bucket's plain HTTP address; the same revision published again (a new
//! sequence, the same system) switches nothing; an older revision is
//! refused by `push publish` and the host keeps its system. A push to the
//! forge deploys a host that pulls from push serve's channel: its long
//! poll makes it start within seconds although it polls every minute, its
//! own signed report puts `success`, or `failure` for a revision whose
//! switch fails, on the commit and its row in `push status`; an operator's
//! `push publish` to push serve's channel (a `[channel] publishers` key)
//! is applied as fast.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use deployd_lab::forge::ForgeKind;
use deployd_lab::s3::S3Server;
use deployd_lab::{Lab, Node, TrustedDeployKey};
use deployd_protocol::api::{DeployRecord, DeployState, StatusResponse};
use deployd_protocol::SecretKey;
use support::deployd::{journal, key, trusted};
use support::forge::{states_of, ForgeFleet};
use support::push::{mark_pulling, system_at, text, PushLab, AWS_ENV};
use support::wait_until;

/// Configures `host`'s deployd to trust `keys` and pull from `channel`
/// every `interval_s` seconds, listening on its loopback only, and
/// (re)starts it.
fn pull_from(
    lab: &mut Lab,
    host: &Node,
    keys: &[TrustedDeployKey],
    channel: &str,
    interval_s: u64,
) {
    let pull = format!("\n[pull]\nchannels = [\"{channel}\"]\ninterval_s = {interval_s}\n");
    lab.write_deployd_config(host, keys, &pull).expect("config");
    lab.listen_inside_only(host).expect("config");
    lab.start_unreachable_deployd(host)
        .expect("deployd up, on the host's loopback only");
}

/// Waits until `host` has a deploy record of `system` that ended; returns it.
fn wait_for_deploy_of(host: &Node, system: &str, timeout: Duration) -> DeployRecord {
    let mut ended = None;
    let done = wait_until(timeout, || {
        ended = host
            .deploy_records()
            .expect("records")
            .into_iter()
            .find(|record| record.store_path.as_str() == system && record.state.is_final());
        ended.is_some()
    });
    assert!(
        done,
        "no ended deploy of {system} on {}: {:#?}\n{}",
        host.name,
        host.deploy_records(),
        journal(host)
    );
    ended.expect("ended")
}

/// When `phase` of `record` began (Unix ms).
fn phase_start(record: &DeployRecord, phase: DeployState) -> u64 {
    record
        .phases
        .iter()
        .find(|entry| entry.state == phase)
        .unwrap_or_else(|| panic!("no {phase:?} phase in {record:#?}"))
        .started_at_ms
}

/// The channel URL `push publish` writes with, for moto's bucket `fleet`.
fn bucket_channel(server: &S3Server) -> String {
    format!(
        "s3://fleet/channel/prod?endpoint={}&region=us-east-1",
        server.endpoint()
    )
}

#[test]
fn a_host_applies_what_push_publish_writes_to_an_s3_bucket() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let server = S3Server::start_on(fleet.lab.state().slot.gateway()).expect("moto");
    server.create_bucket("fleet").expect("bucket");
    let ops = TrustedDeployKey {
        public_key: fleet.public_key.clone(),
        may: None,
    };
    // The host reads the bucket as plain HTTP, anonymously.
    let read_url = format!("{}/fleet/channel/prod", server.endpoint());
    pull_from(&mut fleet.lab, &host, &[ops], &read_url, 1);
    mark_pulling(fleet.lab.flake().dir(), &host.name);
    let channel = bucket_channel(&server);
    let publish = |fleet: &PushLab, rev: &str, extra: &[&str]| {
        let mut args = vec!["publish", "--all", "--channel", &channel];
        args.extend_from_slice(extra);
        args.push(rev);
        let output = fleet.push_with(&args, &AWS_ENV);
        let (stdout, stderr) = text(&output);
        assert!(
            output.status.code().is_some(),
            "push publish was killed: {stderr}"
        );
        (output.status.code(), stdout, stderr)
    };

    // The head, published: the host switches to it, once.
    let first = fleet.lab.flake().head().expect("head");
    let first_system = system_at(fleet.lab.flake().dir(), &first, &host.name);
    let (code, stdout, stderr) = publish(&fleet, &first, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let record = wait_for_deploy_of(&host, &first_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:#?}");
    assert_eq!(
        record.rev.as_ref().map(|rev| rev.as_str()),
        Some(first.as_str())
    );
    assert_eq!(host.current_system(), Some(first_system.clone()));
    assert_eq!(host.deploy_records().expect("records").len(), 1);
    let switches = host.switch_log().expect("switch log").len();
    let generation = host.profile_generation();

    // The same revision again: sequence 2, the same system. deployd takes
    // it as a deploy that finds its system already active: it succeeds at
    // once, with no switch and no new generation.
    let (code, stdout, stderr) = publish(&fleet, &first, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let done = wait_until(Duration::from_secs(60), || {
        let records = host.deploy_records().expect("records");
        records.len() == 2 && records[1].state.is_final()
    });
    let records = host.deploy_records().expect("records");
    assert!(done, "{records:#?}\n{}", journal(&host));
    let again = &records[1];
    assert_eq!(again.state, DeployState::Succeeded, "{again:#?}");
    assert_eq!(again.store_path.as_str(), first_system);
    assert!(
        again
            .phases
            .iter()
            .all(|phase| phase.state != DeployState::Activating),
        "{again:#?}"
    );
    assert_eq!(host.switch_log().expect("switch log").len(), switches);
    assert_eq!(host.profile_generation(), generation);

    // A newer revision is applied; the older one after it is refused by
    // push publish, and the host keeps the newer system.
    let second = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let second_system = system_at(fleet.lab.flake().dir(), &second, &host.name);
    let (code, stdout, stderr) = publish(&fleet, &second, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let record = wait_for_deploy_of(&host, &second_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:#?}");
    assert_eq!(host.current_system(), Some(second_system.clone()));
    let (code, stdout, stderr) = publish(&fleet, &first, &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("does not descend from it"), "{stdout}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(host.deploy_records().expect("records").len(), 3);
    assert_eq!(host.current_system(), Some(second_system));
}

/// Unix milliseconds of `path`'s last write.
fn written_at_ms(path: &std::path::Path) -> u64 {
    let modified = std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let since = modified.duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_millis()).expect("milliseconds")
}

/// From push serve's write of `host`'s held state (`state_file`) to the
/// host's `activating` phase of `record`: printed, and well under the
/// host's one-minute poll interval (only the long poll makes it this fast).
fn check_latency(what: &str, state_file: &std::path::Path, record: &DeployRecord) -> f64 {
    let published = written_at_ms(state_file);
    let activating = phase_start(record, DeployState::Activating);
    let accepted = record.created_at_ms;
    assert!(activating >= published, "{published} {record:#?}");
    let seconds = (activating - published) as f64 / 1000.0;
    eprintln!(
        "{what}: published to the host's deploy record {:.3}s, to its `activating` phase {seconds:.3}s",
        accepted.saturating_sub(published) as f64 / 1000.0,
    );
    assert!(seconds < 10.0, "{what}: {seconds}s");
    seconds
}

#[test]
fn a_push_to_the_forge_deploys_a_host_that_pulls_from_push_serve() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::Forgejo);
    let host = fleet.lab.hosts()[0].clone();
    let ops = key("ops-1");
    fleet.follow_with(&format!(
        "[channel]\npublishers = [\"{}\"]",
        ops.public_key()
    ));
    let ci = SecretKey::load(&fleet.service_file("ci-1.secret")).expect("ci-1");
    let keys = [
        trusted(&ci, Some(&["deploy", "read"])),
        trusted(&ops, Some(&["deploy"])),
    ];
    let channel = format!("{}/v1/channel", fleet.url());
    // A minute between polls: only the long poll can make it fast.
    pull_from(&mut fleet.lab, &host, &keys, &channel, 60);
    let status: StatusResponse = serde_json::from_str(
        &fleet
            .lab
            .ask_deployd_inside(&host, "/v1/status")
            .expect("status"),
    )
    .expect("a status answer");
    let host_key = status.host_key.expect("host_key in /v1/status");
    // Until push serve's first rollout it knows no host (its channel
    // answers 404, and the host polls again a minute later): the host
    // starts after the first state is held, as a host installed after it.
    fleet.lab.stop_deployd(&host).expect("stopped");
    fleet.mark_as_pulling(&host, &host_key);
    let state_file = fleet.service_file(&format!("state/channel/hosts/{}.json", host.name));

    // The first push: published, then taken when the host starts.
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let held = wait_until(Duration::from_secs(180), || state_file.exists());
    assert!(held, "{}", fleet.service_log());
    fleet
        .lab
        .start_unreachable_deployd(&host)
        .expect("deployd up");
    let first_system = system_at(fleet.lab.flake().dir(), &first, &host.name);
    let record = wait_for_deploy_of(&host, &first_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:#?}");
    assert_eq!(host.current_system(), Some(first_system));
    let statuses = fleet.wait_for_final_statuses(&first, Duration::from_secs(120));
    assert_eq!(
        states_of(&statuses, &host.name).last().map(String::as_str),
        Some("success"),
        "{statuses:#?}"
    );

    // The second push, while the host long-polls.
    let (second, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let second_system = system_at(fleet.lab.flake().dir(), &second, &host.name);
    let record = wait_for_deploy_of(&host, &second_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:#?}");
    assert_eq!(record.key.as_str(), "ci-1");
    assert_eq!(host.current_system(), Some(second_system));
    check_latency("a forge push", &state_file, &record);
    let statuses = fleet.wait_for_final_statuses(&second, Duration::from_secs(60));
    let context = format!("deployd/{}", host.name);
    let last = statuses
        .iter()
        .rev()
        .find(|status| status.context == context)
        .expect("a status");
    assert_eq!(last.state, "success", "{statuses:#?}");
    assert_eq!(last.description.as_deref(), Some("deployed"));
    // push status reads the host's own report from the channel.
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
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(host.name.as_str()))
        .unwrap_or_else(|| panic!("no line for {}:\n{stdout}", host.name))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], &second[..12], "{stdout}");
    assert_eq!(row[3], "succeeded", "{stdout}");
    assert_eq!(row[7], "pull", "{stdout}");
    assert_eq!(row[8], "reported", "{stdout}");
    eprintln!("{stdout}");

    // A revision whose switch fails on the host: rolled back there, and
    // `failure` on the commit, from the host's report.
    let before = fleet.lab.flake().head().expect("head");
    let failing = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&host.name)
        .expect("commit");
    assert_eq!(fleet.hook(&before, &failing), 202);
    let failing_system = system_at(fleet.lab.flake().dir(), &failing, &host.name);
    let record = wait_for_deploy_of(&host, &failing_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::RolledBack, "{record:#?}");
    let code = record.error.as_ref().expect("why it failed").code.clone();
    let statuses = fleet.wait_for_final_statuses(&failing, Duration::from_secs(60));
    let last = statuses
        .iter()
        .rev()
        .find(|status| status.context == context)
        .expect("a status");
    assert_eq!(last.state, "failure", "{statuses:#?}");
    let description = last.description.clone().unwrap_or_default();
    assert!(description.contains(&code), "{description} ({code})");
    let previous = record.previous_system.clone();
    assert_eq!(host.current_system(), previous);

    // An operator publishes to push serve's channel with a key of its
    // `[channel] publishers`: applied at once as well.
    let third = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let inventory = fleet.lab.flake().dir().join("push.toml");
    let written = std::fs::read_to_string(&inventory).expect("push.toml");
    // The operator copies to the fleet's cache as push serve does (not
    // committed: only this run of push reads it).
    let copying = written.replace(
        "[defaults]\n",
        &format!(
            "[defaults]\ncopy_to = \"file://{}\"\nsign_key_file = \"{}\"\n",
            fleet.lab.cache_dir().display(),
            fleet.lab.cache_secret_key_file().display()
        ),
    );
    std::fs::write(&inventory, copying).expect("push.toml");
    let ops_file = fleet.lab.dir().join("keys/ops-1.secret");
    std::fs::write(&ops_file, ops.to_key_file_text().as_bytes()).expect("key file");
    let output = fleet
        .lab
        .push_command(&ops_file, &fleet.service_file("operator-state"))
        .expect("push")
        .args(["publish", "--all", "--channel", &channel, &third])
        .output()
        .expect("push publish");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let third_system = system_at(fleet.lab.flake().dir(), &third, &host.name);
    let record = wait_for_deploy_of(&host, &third_system, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:#?}");
    assert_eq!(record.key.as_str(), "ops-1");
    assert_eq!(host.current_system(), Some(third_system));
    check_latency("an operator's push publish", &state_file, &record);
    std::fs::write(&inventory, written).expect("push.toml");
}
