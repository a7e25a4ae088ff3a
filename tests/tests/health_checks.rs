//! Health checks keep to their deadline: a check that would run past
//! `deadline_s` is cut there, whatever its own time limit.

mod support;

use std::time::{Duration, Instant};

use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::OneHost;

#[test]
fn a_check_that_runs_past_the_deadline_is_cut_there() {
    let health = "\n[health]\ndeadline_s = 3\ninterval_s = 1\n\n[[health.commands]]\ncommand = [\"/bin/sh\", \"-c\", \"/usr/bin/sleep 120\"]\ntimeout_s = 120\n";
    let one = OneHost::with_config(health);
    let first = one.head_system();
    // The first deploy has nothing to roll back to: it fails, in time.
    let started = Instant::now();
    let id = support::deployd::deploy(
        &one.lab,
        &one.host,
        &support::deployd::deploy_message(&one.host, "slow-check", &first, Action::Switch),
        &one.ops,
    );
    let record = support::deployd::wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(40));
    assert_ne!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the health checks took {:?} against a deadline of 3 s",
        started.elapsed()
    );
}
