//! Under real systemd (PID 1 of the host, with journald and D-Bus, units
//! given NixOS's empty `PATH`): deployd runs as `deployd.service`, the
//! switch runs in a transient unit whose wrapper writes its pid and status
//! files, and the deploy ends `succeeded`; deployd's log lines reach the
//! journal with the deploy's fields.

mod support;

use std::time::Duration;

use deployd_lab::{Lab, DEPLOYD_STATE_DIR};
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{deploy, deploy_message, key, trusted, wait_for_end};
use support::lab_options;

#[test]
fn a_switch_in_a_transient_unit_succeeds_and_is_journaled() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    let name = lab.hosts()[0].name.clone();
    let host = lab.hosts()[0].clone();
    lab.write_deployd_config(&host, &[trusted(&ops, None)], "")
        .expect("config");
    let host = lab.boot_systemd(&name).expect("systemd boots");

    let running = host
        .command("systemctl", ["is-active", "deployd.service"])
        .output()
        .expect("systemctl");
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "active");

    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&name].clone();
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "under-systemd", &system, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(90));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.current_system().as_deref(), Some(system.as_str()));

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
            .any(|entry| entry["STORE_PATH"] == system.as_str()),
        "{lines}"
    );
}
