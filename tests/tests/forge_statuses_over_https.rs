//! The forge's status API is HTTPS only, as every real forge's is (the
//! stand-in serves it on its TLS port alone, with a certificate from the
//! test's CA). `push serve`, given that CA as `ca_file`, posts every status
//! there; without it, the certificate does not verify: the forge gets no
//! status, the rollout still deploys, and the service's log says why in one
//! line per status, naming the forge's host, without retrying.

mod support;

use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use support::forge::{states_of, FleetSetup, ForgeFleet};
use support::push::system_at;

/// What the log says for each status the forge did not get.
const UNTRUSTED: &str = "127.0.0.1: certificate not trusted (UnknownIssuer): \
                         is it signed by a CA in the system's roots or ca_file?";

#[test]
fn push_serve_posts_every_status_to_an_https_only_forge() {
    let mut fleet = ForgeFleet::up(2, ForgeKind::Forgejo);
    let api = fleet.forge.api_url();
    assert!(api.starts_with("https://"), "{api}");
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    for host in fleet.lab.hosts() {
        assert_eq!(
            states_of(&statuses, &host.name),
            ["pending", "pending", "success"],
            "{}",
            host.name
        );
    }
    assert!(statuses
        .iter()
        .all(|status| status.answer == 201 && status.token_valid));
    let log = fleet.service_log();
    assert!(
        !log.contains("did not take status") && !log.contains("cannot post status"),
        "{log}"
    );
}

#[test]
fn a_forge_whose_certificate_is_not_trusted_gets_no_status_and_the_log_says_why() {
    let setup = FleetSetup {
        forge_ca_given: false,
        ..FleetSetup::default()
    };
    let mut fleet = ForgeFleet::set_up(2, ForgeKind::GitHub, setup);
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    // The rollout does not wait for the forge: every host deploys.
    let ended = support::wait_until(Duration::from_secs(120), || {
        !fleet.service_status()["recent"][0].is_null()
    });
    assert!(ended, "{}", fleet.service_log());
    for host in fleet.lab.hosts() {
        assert_eq!(
            host.current_system(),
            Some(system_at(fleet.lab.flake().dir(), &rev, &host.name)),
            "{}",
            host.name
        );
    }
    // building, deploying and success for each host: one line each.
    let expected = 3 * fleet.lab.hosts().len();
    let refused = |log: &str| {
        log.lines()
            .filter(|line| line.contains("cannot post status deployd/"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let all_told = support::wait_until(Duration::from_secs(30), || {
        refused(&fleet.service_log()).len() >= expected
    });
    let log = fleet.service_log();
    assert!(all_told, "{log}");
    let lines = refused(&log);
    assert_eq!(lines.len(), expected, "{log}");
    for line in &lines {
        assert!(line.ends_with(UNTRUSTED), "{line}");
        assert!(line.contains(&rev[..12]), "{line}");
    }
    assert!(!log.contains("error sending request"), "{log}");
    assert!(
        !log.contains("again in"),
        "a certificate was retried: {log}"
    );
    assert!(
        fleet.forge.statuses().is_empty() && fleet.forge.statuses_while_down().is_empty(),
        "{:?}",
        fleet.forge.statuses()
    );
}
