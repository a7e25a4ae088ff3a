//! Two hosts deployed in parallel by their own deployd, from the builder's
//! cache: a new profile generation, the switch recorded on each host, the
//! status and the deploy record telling the same story, and the event
//! stream ending in `succeeded`.

mod support;

use std::time::Duration;

use deployd_lab::{Lab, SwitchRecord};
use deployd_protocol::api::{DeployState, StateEvent};
use deployd_protocol::Action;
use support::deployd::{
    deploy, deploy_message, events, key, start_fleet, status, trusted, wait_for_end,
};
use support::lab_options;

#[test]
fn two_hosts_are_deployed_in_parallel() {
    let mut lab = Lab::up(&lab_options(2)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let rev = lab.flake().head().expect("head");
    let systems = lab.build_and_publish(&rev).expect("build");

    let hosts = lab.hosts().to_vec();
    let ids: Vec<String> = hosts
        .iter()
        .map(|host| {
            let mut message = deploy_message(
                host,
                &format!("{}-1", host.name),
                &systems[&host.name],
                Action::Switch,
            );
            if let deployd_protocol::Request::Deploy(request) = &mut message.request {
                request.rev = Some(rev.parse().expect("rev"));
            }
            deploy(&lab, host, &message, &ops)
        })
        .collect();

    for (host, id) in hosts.iter().zip(&ids) {
        let system = &systems[&host.name];
        let record = wait_for_end(&lab, host, id, Duration::from_secs(60));
        assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
        assert_eq!(record.store_path.as_str(), system);
        assert_eq!(record.rev.as_ref().map(|r| r.as_str()), Some(rev.as_str()));
        assert_eq!(record.key.as_str(), "ops-1");
        let states: Vec<DeployState> = record.phases.iter().map(|p| p.state).collect();
        assert_eq!(
            states,
            [
                DeployState::Received,
                DeployState::Fetching,
                DeployState::Activating,
                // systemd runs the host: `is-system-running` is checked.
                DeployState::CheckingHealth,
                DeployState::Succeeded
            ]
        );

        // The host itself.
        assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
        assert_eq!(host.profile_system().as_ref(), Some(system));
        assert_eq!(host.current_system().as_ref(), Some(system));
        assert_eq!(
            host.switch_log().expect("switch log"),
            vec![SwitchRecord {
                action: "switch".into(),
                system: system.clone()
            }]
        );

        // What deployd says about it.
        let status = status(&lab, host);
        assert_eq!(status.hostname.as_str(), host.name);
        assert_eq!(status.current_system.as_ref(), Some(system));
        assert_eq!(status.generations.len(), 1);
        assert!(status.generations[0].current && &status.generations[0].system == system);
        let last = status.last_deploy.expect("a last deploy");
        assert_eq!(last.deploy_id.as_str(), id);
        assert_eq!(last.state, DeployState::Succeeded);
        assert!(status.active_deploy.is_none());
        assert!(status.nix_version.expect("nix version").contains("nix"));

        // A late subscriber gets the whole story, ending in `done`.
        let events = events(&lab, host, id);
        let states: Vec<DeployState> = events
            .iter()
            .filter(|(name, _)| name == "state")
            .map(|(_, data)| {
                serde_json::from_str::<StateEvent>(data)
                    .expect("state event")
                    .state
            })
            .collect();
        assert_eq!(states.first(), Some(&DeployState::Received));
        assert_eq!(states.last(), Some(&DeployState::Succeeded));
        assert!(
            events
                .iter()
                .any(|(name, data)| name == "log" && data.contains("activated")),
            "{events:?}"
        );
        let (last_name, last_data) = events.last().expect("events");
        assert_eq!(last_name, "done");
        let done: deployd_protocol::api::DeployRecord =
            serde_json::from_str(last_data).expect("record");
        assert_eq!(done, support::deployd::record(&lab, host, id));
    }
}

#[test]
fn deploying_the_active_system_again_succeeds_at_once() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    let first = deploy(
        &lab,
        &host,
        &deploy_message(&host, "first", &system, Action::Switch),
        &ops,
    );
    assert_eq!(
        wait_for_end(&lab, &host, &first, Duration::from_secs(60)).state,
        DeployState::Succeeded
    );

    let again = deploy(
        &lab,
        &host,
        &deploy_message(&host, "again", &system, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &again, Duration::from_secs(10));
    assert_eq!(record.state, DeployState::Succeeded);
    assert!(
        record
            .phases
            .iter()
            .all(|p| p.state != DeployState::Activating),
        "{record:?}"
    );
    assert_eq!(host.switch_log().expect("log").len(), 1, "activated twice");
    assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
    let took_ms = record.finished_at_ms.expect("finished") - record.created_at_ms;
    eprintln!("no-op deploy took {took_ms} ms from request to succeeded");
}

#[test]
fn a_subscriber_joining_mid_deploy_gets_the_past_then_the_live_events() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    // The switch waits at a gate only this test opens, after it has subscribed.
    host.set_switch_gate(true).expect("gate");
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "watched", &system, Action::Switch),
        &ops,
    );
    assert!(support::wait_until(Duration::from_secs(30), || host
        .switch_log()
        .expect("log")
        .len()
        == 1));

    let url = format!("{}/v1/deploys/{id}/events", lab.deployd_url(&host));
    let response = support::deployd::http().get(url).send().expect("subscribe");
    let mut reader = std::io::BufReader::new(response);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).expect("first line");
    assert!(first.starts_with("event: state"), "{first}");
    // Subscribed while the switch is held: what follows can only come live.
    host.set_switch_gate(false).expect("open the gate");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("the stream ends");
    let events = format!("{first}{rest}");
    let states: Vec<DeployState> = events
        .split("\n\n")
        .filter_map(|block| {
            let data = block.lines().find_map(|l| l.strip_prefix("data:"))?;
            block.contains("event: state").then(|| {
                serde_json::from_str::<StateEvent>(data.trim())
                    .expect("state")
                    .state
            })
        })
        .collect();
    assert_eq!(
        states,
        [
            DeployState::Received,
            DeployState::Fetching,
            DeployState::Activating,
            // systemd runs the host: `is-system-running` is checked.
            DeployState::CheckingHealth,
            DeployState::Succeeded
        ]
    );
    assert!(events.contains("activated"), "{events}");
    assert!(
        events
            .trim_end()
            .rsplit("\n\n")
            .next()
            .is_some_and(|last| last.starts_with("event: done")),
        "{events}"
    );

    let metrics = support::deployd::http()
        .get(format!("{}/metrics", lab.deployd_url(&host)))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("deployd_deploys_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "deployd_current_system_info{{store_path=\"{system}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("deployd_last_success_timestamp_seconds "),
        "{metrics}"
    );
}
