//! Under real systemd (PID 1 of the host, with journald and D-Bus, units
//! given NixOS's empty `PATH`): deployd runs as `deployd.service`, the
//! switch runs in a transient unit whose wrapper writes its pid and status
//! files, and the deploy ends `succeeded`; deployd's log lines reach the
//! journal with the deploy's fields. The switch outlives deployd: killed
//! with SIGKILL or restarted by systemctl mid-switch, systemd brings deployd
//! back (`Restart=always`) and the deploy ends truthfully, the switch run once.

mod support;

use std::time::Duration;

use deployd_lab::{Lab, Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, Request, SecretKey};
use support::deployd::{
    deploy, deploy_message, wait_for_deployd_restart, wait_for_end, wait_for_state, OneHost,
};
use support::wait_until;

/// A lab of one host that boots systemd, deployd trusting `ops-1`.
fn systemd_host() -> (Lab, SecretKey, Node) {
    let one = OneHost::up();
    assert!(one.host.pid1.is_some(), "lab hosts boot systemd");
    (one.lab, one.ops, one.host)
}

#[test]
fn a_switch_in_a_transient_unit_succeeds_and_is_journaled() {
    let (lab, ops, host) = systemd_host();
    let name = host.name.clone();

    let running = host
        .command("systemctl", ["is-active", "deployd.service"])
        .output()
        .expect("systemctl");
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "active");

    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&name].clone();
    let mut message = deploy_message(&host, "under-systemd", &system, Action::Switch);
    if let Request::Deploy(request) = &mut message.request {
        request.rev = Some(rev.parse().expect("rev"));
    }
    let id = deploy(&lab, &host, &message, &ops);
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(90));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_deref(), Some(system.as_str()));
    // The switch's output is in the deploy's log.
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains(&format!("activated {system} (switch)"))),
        "{:?}",
        record.log_tail
    );

    // The wrapper wrote whole pid and status lines, with builtins alone.
    let deploy_dir = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}"));
    let files: Vec<String> = std::fs::read_dir(&deploy_dir)
        .expect("deploy dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let status_file = files
        .iter()
        .find(|name| name.ends_with(".status"))
        .unwrap_or_else(|| panic!("no status file among {files:?}"));
    let status = std::fs::read_to_string(deploy_dir.join(status_file)).expect("status");
    assert_eq!(status, "0\n");

    // systemd ran it, as a transient unit of its own.
    let unit = format!("deployd-switch-{id}-1.service");
    let journal = host
        .command(
            "journalctl",
            ["--no-pager", "-o", "cat", &format!("UNIT={unit}")],
        )
        .output()
        .expect("journalctl");
    let journal = String::from_utf8_lossy(&journal.stdout);
    assert!(
        journal.contains("deployd switch-to-configuration"),
        "{journal}"
    );

    // deployd's own lines carry the deploy's fields.
    let lines = host
        .command(
            "journalctl",
            ["--no-pager", "-o", "json", &format!("DEPLOY_ID={id}")],
        )
        .output()
        .expect("journalctl");
    let lines = String::from_utf8_lossy(&lines.stdout);
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a journal entry"))
        .collect();
    assert!(!entries.is_empty(), "no journal entry for {id}");
    assert!(entries
        .iter()
        .all(|entry| entry["_SYSTEMD_UNIT"] == "deployd.service"));
    assert!(
        entries
            .iter()
            .any(|entry| entry["STORE_PATH"] == system.as_str() && entry["REV"] == rev.as_str()),
        "{lines}"
    );

    // No secret reaches the journal: not the deploy key, not the cache's.
    let everything = host
        .command("journalctl", ["--no-pager", "-o", "json"])
        .output()
        .expect("journalctl");
    let everything = String::from_utf8_lossy(&everything.stdout);
    let cache_secret =
        std::fs::read_to_string(lab.cache_secret_key_file()).expect("cache secret key");
    let deploy_secret = ops.to_key_file_text();
    for secret in [cache_secret.as_str(), deploy_secret.as_str()] {
        let secret = secret.trim().rsplit(':').next().expect("key");
        assert!(secret.len() > 40, "not a key: {secret:?}");
        assert!(!everything.contains(secret), "a secret is in the journal");
    }
}

/// Deploys `system` with the switch held at the gate, does `interrupt` to
/// deployd once the switch runs, opens the gate and returns the record.
fn deploy_through(
    (lab, ops, host): (&Lab, &SecretKey, &Node),
    (id, system): (&str, &str),
    interrupt: impl FnOnce(),
) -> deployd_protocol::api::DeployRecord {
    let switches_before = host.switch_log().expect("switch log").len();
    host.set_switch_gate(true).expect("gate");
    let id = deploy(
        lab,
        host,
        &deploy_message(host, id, system, Action::Switch),
        ops,
    );
    wait_for_state(lab, host, &id, "activating", Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(20), || host
        .switch_log()
        .expect("switch log")
        .len()
        > switches_before));
    // The switch runs in its own transient unit, whatever happens to deployd.
    let unit = format!("deployd-switch-{id}-1.service");
    let active = host
        .command("systemctl", ["is-active", &unit])
        .output()
        .expect("systemctl");
    assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    interrupt();
    host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(lab, host, &id, Duration::from_secs(90));
    let switches = host.switch_log().expect("switch log");
    assert_eq!(
        switches.len(),
        switches_before + 1,
        "the switch ran more than once: {switches:?}"
    );
    record
}

#[test]
fn the_switch_outlives_deployd_and_systemd_brings_it_back() {
    let (mut lab, ops, host) = systemd_host();

    // Killed while idle: Restart=always.
    let idle = lab.deployd_pid(&host).expect("deployd runs");
    lab.signal_deployd(&host, "KILL").expect("kill -9");
    wait_for_deployd_restart(&lab, &host, idle);

    let rev = lab.flake().head().expect("head");
    let first = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    let record = deploy_through((&lab, &ops, &host), ("killed", &first), || {
        let pid = lab.deployd_pid(&host).expect("deployd runs");
        lab.signal_deployd(&host, "KILL").expect("kill -9");
        wait_for_deployd_restart(&lab, &host, pid);
    });
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_deref(), Some(first.as_str()));

    let rev = lab.flake_mut().commit_changed_system().expect("commit");
    let second = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    let record = deploy_through((&lab, &ops, &host), ("restarted", &second), || {
        let pid = lab.deployd_pid(&host).expect("deployd runs");
        host.run(&["systemctl", "restart", "deployd.service"])
            .expect("systemctl restart");
        wait_for_deployd_restart(&lab, &host, pid);
    });
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_deref(), Some(second.as_str()));
}

#[test]
fn a_switch_longer_than_the_start_grace_is_waited_for() {
    let (lab, ops, host) = systemd_host();
    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    // Held past the daemon's 10 s start grace, as a real switch that
    // restarts slow services is; its pid, written by the wrapper inside
    // the transient unit, says it runs.
    host.set_switch_gate(true).expect("gate");
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "slow-switch", &system, Action::Switch),
        &ops,
    );
    wait_for_state(&lab, &host, &id, "activating", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(13));
    let pid_file = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}/switch-1.pid"));
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    assert!(pid.trim().parse::<u32>().is_ok(), "pid file holds {pid:?}");
    host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_deref(), Some(system.as_str()));
}
