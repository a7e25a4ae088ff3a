//! While another switch holds NixOS's switch lock (`nixos-rebuild`,
//! `system.autoUpgrade`), deployd waits for it instead of rolling back: the
//! deploy succeeds once the lock is free, with one new generation, one
//! switch of the new system and none back.

mod support;

use std::time::{Duration, Instant};

use deployd_lab::SWITCH_LOCK;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{deploy, deploy_message, switched_systems, wait_for_end, OneHost};

/// How long the other switch holds the lock.
const HELD: Duration = Duration::from_secs(6);

#[test]
fn a_deploy_waits_for_another_switch_to_release_the_lock() {
    let mut one = OneHost::up();
    let first = one.deploy_head();
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let next = one.system_at(&rev);

    // Another switch, as nixos-rebuild's would, under the host's systemd (so
    // in deployd's PID namespace), holding the lock for a few seconds.
    one.host.sh("mkdir -p /run/nixos").expect("mkdir");
    let held = one
        .host
        .command(
            "systemd-run",
            [
                "--unit=lab-other-switch",
                "--collect",
                "flock",
                "--no-fork",
                SWITCH_LOCK,
                // The host's units run with NixOS's PATH, empty here.
                "/bin/sleep",
                &HELD.as_secs().to_string(),
            ],
        )
        .output()
        .expect("systemd-run");
    assert!(held.status.success(), "{held:?}");
    let locked_at = Instant::now();
    let lock_seen = support::wait_until(Duration::from_secs(5), || {
        let free = one
            .host
            .command("flock", ["-n", SWITCH_LOCK, "true"])
            .output();
        free.is_ok_and(|output| !output.status.success())
    });
    if !lock_seen {
        let unit = one
            .host
            .command("journalctl", ["--no-pager", "-u", "lab-other-switch"])
            .output();
        panic!("the other switch never took the lock: {unit:?}");
    }

    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "while-locked", &next, Action::Switch),
        &one.ops,
    );
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(120));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(
        locked_at.elapsed() >= HELD - Duration::from_secs(1),
        "it did not wait for the lock: {:?}",
        locked_at.elapsed()
    );
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("holds") && line.contains(SWITCH_LOCK)),
        "{:?}",
        record.log_tail
    );
    let host = &one.host;
    assert_eq!(host.profile_generation().as_deref(), Some("system-2-link"));
    assert_eq!(host.current_system().as_ref(), Some(&next));
    assert_eq!(switched_systems(host), [first, next]);
}
