//! `push serve` fetches over `ssh://` from a real OpenSSH server (the
//! builder's), with the key from its `[git] ssh_key_file`, and checks the
//! server's host key against its user's `~/.ssh/known_hosts`: a known host
//! deploys the push; an unknown one is refused, and nothing is deployed.

mod support;

use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use support::forge::{Fetch, ForgeFleet};
use support::push::system_at;

#[test]
fn a_push_fetched_over_ssh_from_a_known_host_deploys() {
    let mut fleet = ForgeFleet::up_with(1, ForgeKind::Gitea, Fetch::Ssh { host_known: true });
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    let host = &fleet.lab.hosts()[0];
    assert_eq!(
        statuses.last().map(|status| status.state.as_str()),
        Some("success"),
        "{statuses:?}\n{}",
        fleet.service_log()
    );
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );
}

#[test]
fn an_unknown_ssh_host_key_is_refused_and_nothing_is_deployed() {
    let mut fleet = ForgeFleet::up_with(1, ForgeKind::Gitea, Fetch::Ssh { host_known: false });
    fleet.push_that_cannot_be_fetched("unknown remote ssh hostkey");
}
