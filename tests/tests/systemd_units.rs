//! Under real systemd, what a NixOS switch does to units, and what systemd
//! does to deployd: the toy system's switch-to-configuration starts new
//! units, restarts changed ones but never deployd (`X-RestartIfChanged=false`),
//! a unit left failed fails the `is-system-running` health check (unless it
//! is allowed), a system with another deployd ends its deploy and systemd
//! runs the new binary (also when the system was switched to from outside
//! deployd, once it is idle), and a frozen deployd is killed by the
//! watchdog and brought back.

mod support;

use std::time::Duration;

use deployd_lab::{ModuleUnit, Node};
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{deploy, deploy_message, wait_for_end, wait_for_state, OneHost};
use support::wait_until;

/// `systemctl show -p PROPERTY --value UNIT` on `host`.
fn unit_property(host: &Node, unit: &str, property: &str) -> String {
    let output = host
        .command("systemctl", ["show", "-p", property, "--value", unit])
        .output()
        .expect("systemctl show");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// What `systemctl SUBCOMMAND UNIT` prints on `host` (`is-active`, `is-failed`).
fn unit_says(host: &Node, subcommand: &str, unit: &str) -> String {
    let output = host
        .command("systemctl", [subcommand, unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The program deployd's main process runs, as the host sees it.
fn deployd_program(one: &OneHost) -> String {
    let pid = one.lab.deployd_pid(&one.host).expect("deployd runs");
    let output = one
        .host
        .run(&["readlink", &format!("/proc/{pid}/exe")])
        .expect("readlink");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A copy of the lab's deployd in the host's store, named `name`, as NixOS
/// has it (`/nix/store/<hash>-<name>`).
fn deployd_in_store(one: &OneHost, name: &str) -> String {
    let binary = one.lab.deployd_binary().expect("deployd");
    let copy = one.host.outside("/var/lib/lab").join(name);
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("dir");
    std::fs::copy(&binary, &copy).expect("copy");
    let added = one
        .host
        .run(&["nix-store", "--add", &format!("/var/lib/lab/{name}")])
        .expect("nix-store --add");
    String::from_utf8_lossy(&added.stdout).trim().to_owned()
}

/// A number of seconds as `systemctl show` prints it (`2s`, `1min`).
/// deployd run from the host's store, as on NixOS: a first system whose
/// `deployd.service` runs it, deployed and restarted into; then the next
/// system, built with another deployd in the store. Returns the running
/// deployd's pid, the other deployd and the next system.
fn running_a_deployd_from_the_store(one: &mut OneHost) -> (u32, String, String) {
    let first_binary = deployd_in_store(one, "deployd");
    let rev = one
        .lab
        .flake_mut()
        .commit("deployd from the store", |settings| {
            settings.deployd_exec = first_binary.clone()
        })
        .expect("commit");
    let first = one.system_at(&rev);
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let host = one.host.clone();
    one.lab.start_deployd(&host).expect("restarted");
    assert_eq!(deployd_program(one), first_binary);
    let pid = one.lab.deployd_pid(&one.host).expect("pid");
    let second_binary = deployd_in_store(one, "deployd-2");
    assert_ne!(first_binary, second_binary);
    let rev = one
        .lab
        .flake_mut()
        .commit("Another deployd", |settings| {
            settings.deployd_exec = second_binary.clone()
        })
        .expect("commit");
    let second = one.system_at(&rev);
    (pid, second_binary, second)
}

fn time_span(seconds: &serde_json::Value) -> String {
    let seconds = seconds.as_u64().expect("seconds");
    if seconds.is_multiple_of(60) {
        format!("{}min", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// A size (`2G`, base 1024 as systemd reads it) in bytes, as `systemctl
/// show` prints it.
fn size_in_bytes(size: &serde_json::Value) -> String {
    let size = size.as_str().expect("a size");
    let (number, unit) = size.split_at(size.len() - 1);
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => panic!("{size}: not a size in K, M, G or T"),
    };
    let number: u64 = number.parse().expect("a whole number");
    (number << shift).to_string()
}

/// A boolean as `systemctl show` prints it.
fn yes_no(value: &serde_json::Value) -> String {
    if value.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

#[test]
fn the_unit_systemd_runs_is_the_one_the_module_renders() {
    let one = OneHost::up();
    let module = ModuleUnit::load().expect("the module's unit");
    for (key, value) in &module.service_config {
        let expected = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        // systemd shows times and booleans its own way.
        let (property, expected) = match key.as_str() {
            "RestartSec" => ("RestartUSec".to_owned(), time_span(value)),
            "WatchdogSec" => ("WatchdogUSec".to_owned(), time_span(value)),
            "MemoryMax" => (key.clone(), size_in_bytes(value)),
            _ if value.is_boolean() => (key.clone(), yes_no(value)),
            _ => (key.clone(), expected),
        };
        let shown = unit_property(&one.host, "deployd.service", &property);
        assert_eq!(shown, expected, "deployd.service {property}");
    }
    assert_eq!(
        unit_property(&one.host, "deployd.service", "Description"),
        module.description
    );
    // It has the module's reload (`reloadSignal`, sent by ExecReload).
    assert_eq!(
        unit_property(&one.host, "deployd.service", "CanReload"),
        "yes"
    );
    // The state directory systemd made is deployd's, mode 0700.
    let output = one
        .host
        .run(&["stat", "-c", "%a", "/var/lib/deployd"])
        .expect("stat");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "700");
}

#[test]
fn a_switch_starts_and_restarts_units_but_never_deployd() {
    let mut one = OneHost::up();
    let pid = one.lab.deployd_pid(&one.host).expect("deployd runs");
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(
        unit_says(&one.host, "is-active", "lab-app.service"),
        "active"
    );
    let started = unit_property(&one.host, "lab-app.service", "InvocationID");
    // Started by lab.target, which wants it, as NixOS's switch starts a new
    // service through the targets that want it, and names it so.
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("the following new units were started: lab-app.service")),
        "{:?}",
        record.log_tail
    );

    // The next system changes lab-app and brings a deployd unit with
    // another program: lab-app restarts, deployd does not.
    let in_store = deployd_in_store(&one, "deployd");
    let rev = one
        .lab
        .flake_mut()
        .commit("A changed app, deployd from the store", |settings| {
            settings.label += 1;
            settings.deployd_exec = in_store.clone();
        })
        .expect("commit");
    let second = one.system_at(&rev);
    let record = one.deploy_to_end("second", &second, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_ne!(
        unit_property(&one.host, "lab-app.service", "InvocationID"),
        started,
        "lab-app.service was not restarted"
    );
    assert!(unit_property(&one.host, "lab-app.service", "Description").ends_with("label 2"));
    assert_eq!(
        one.lab.deployd_pid(&one.host),
        Some(pid),
        "deployd restarted"
    );
    // systemd has the new unit loaded, for its next start.
    assert!(
        unit_property(&one.host, "deployd.service", "ExecStart").contains(&in_store),
        "{}",
        unit_property(&one.host, "deployd.service", "ExecStart")
    );
}

#[test]
fn a_unit_left_failed_rolls_back_unless_it_is_allowed() {
    // A short deadline: the failed unit stays failed, round after round.
    let health = "\n[health]\ndeadline_s = 6\ninterval_s = 2\n";
    let mut one = OneHost::with_config(health);
    let first = one.head_system();
    let record = one.deploy_to_end("first", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    let name = one.host.name.clone();

    let rev = one
        .lab
        .flake_mut()
        .commit_failing_unit(&name)
        .expect("commit");
    let broken = one.system_at(&rev);
    let record = one.deploy_to_end("broken", &broken, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let message = record.error.expect("error").message;
    assert!(
        message.contains("health checks failed") && message.contains("lab-broken.service"),
        "{message}"
    );
    assert_eq!(one.host.current_system(), Some(first.clone()));
    // The old system's switch removed the unit and reset the failure.
    assert_eq!(
        unit_says(&one.host, "is-failed", "lab-broken.service"),
        "inactive"
    );
    let output = one
        .host
        .command("systemctl", ["is-system-running"])
        .output()
        .expect("systemctl");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "running");

    // With the unit allowed to fail, the same system stays.
    let host = one.host.clone();
    one.lab
        .write_deployd_config(
            &host,
            &[support::deployd::trusted(&one.ops, None)],
            &format!("{health}allowed_failed_units = [\"lab-broken.service\"]\n"),
        )
        .expect("config");
    one.lab.start_deployd(&host).expect("deployd restarted");
    let record = one.deploy_to_end("allowed", &broken, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(broken));
    assert_eq!(
        unit_says(&one.host, "is-failed", "lab-broken.service"),
        "failed"
    );
}

#[test]
fn a_system_with_another_deployd_ends_its_deploy_and_systemd_runs_the_new_binary() {
    let mut one = OneHost::up();
    let (pid, second_binary, second) = running_a_deployd_from_the_store(&mut one);
    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "new-daemon", &second, Action::Switch),
        &one.ops,
    );
    assert!(
        wait_until(Duration::from_secs(60), || one
            .lab
            .deployd_pid(&one.host)
            .is_some_and(|now| now != pid)
            && deployd_program(&one) == second_binary),
        "systemd did not start the new deployd"
    );
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("runs another deployd")),
        "{:?}",
        record.log_tail
    );
    assert_eq!(one.host.current_system(), Some(second));
    assert_eq!(
        unit_property(&one.host, "deployd.service", "NRestarts"),
        "1",
        "deployd exited once, for its new binary"
    );
}

#[test]
fn a_system_switched_to_from_outside_with_another_deployd_gets_it_once_idle() {
    let mut one = OneHost::up();
    let (pid, second_binary, second) = running_a_deployd_from_the_store(&mut one);
    // The next system, with another deployd, made the boot default through
    // deployd, then switched to by hand, as `nixos-rebuild switch` would:
    // deployd is not restarted by the switch (`X-RestartIfChanged=false`).
    let record = one.deploy_to_end("at-boot", &second, Action::Boot);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.lab.deployd_pid(&one.host), Some(pid));
    let switched = one
        .host
        .sh("/nix/var/nix/profiles/system/bin/switch-to-configuration switch")
        .expect("switch");
    assert!(switched.status.success(), "{switched:?}");
    assert_eq!(one.host.current_system(), Some(second));
    assert!(
        wait_until(Duration::from_secs(30), || one
            .lab
            .deployd_pid(&one.host)
            .is_some_and(|now| now != pid)
            && deployd_program(&one) == second_binary),
        "deployd did not restart into the running system's binary"
    );
}

#[test]
fn a_frozen_deployd_is_killed_by_the_watchdog_and_its_deploy_ends() {
    let mut one = OneHost::up();
    // The module's WatchdogSec is 60 s; a drop-in shortens it, as an
    // operator's `serviceConfig.WatchdogSec` would.
    one.host
        .sh("mkdir -p /etc/systemd/system/deployd.service.d && printf '[Service]\\nWatchdogSec=3\\n' > /etc/systemd/system/deployd.service.d/watchdog.conf && systemctl daemon-reload")
        .expect("drop-in");
    let host = one.host.clone();
    one.lab.start_deployd(&host).expect("restarted");
    assert_eq!(
        unit_property(&one.host, "deployd.service", "WatchdogUSec"),
        "3s"
    );

    // A fed watchdog: deployd lives well past 3 s.
    let pid = one.lab.deployd_pid(&one.host).expect("pid");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        one.lab.deployd_pid(&one.host),
        Some(pid),
        "killed while fed"
    );

    let system = one.head_system();
    one.host.set_switch_gate(true).expect("gate");
    let id = deploy(
        &one.lab,
        &one.host,
        &deploy_message(&one.host, "frozen", &system, Action::Switch),
        &one.ops,
    );
    wait_for_state(
        &one.lab,
        &one.host,
        &id,
        "activating",
        Duration::from_secs(60),
    );
    // Frozen once the switch runs (held at the gate), not before it starts.
    assert!(
        wait_until(Duration::from_secs(30), || one
            .host
            .switch_log()
            .is_ok_and(|log| log.len() == 1)),
        "the switch never started"
    );
    one.lab.signal_deployd(&one.host, "STOP").expect("SIGSTOP");
    assert!(
        wait_until(Duration::from_secs(30), || one
            .lab
            .deployd_pid(&one.host)
            .is_some_and(|now| now != pid)),
        "the watchdog did not replace the frozen deployd"
    );
    let journal = one
        .host
        .command("journalctl", ["--no-pager", "-u", "deployd.service"])
        .output()
        .expect("journalctl");
    let journal = String::from_utf8_lossy(&journal.stdout);
    assert!(journal.contains("Watchdog timeout"), "{journal}");

    one.host.set_switch_gate(false).expect("gate");
    let record = wait_for_end(&one.lab, &one.host, &id, Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(
        one.host.switch_log().expect("log").len(),
        1,
        "switched twice"
    );
    assert_eq!(one.host.current_system(), Some(system));
}
