//! The toy systems' `switch-to-configuration` answers as NixOS's
//! (switch-to-configuration-ng) does in every case deployd reads, run here
//! by hand on a host that boots systemd, without deployd: the usage, the
//! lock, the pre-switch checks and switch inhibitors, the boot loader, a
//! new init interface (exit 100), an activation that fails (exit 2), a unit
//! a target wants that fails (exit 4, again at the next switch), the lists
//! an interrupted switch leaves, specialisations and the platform a system
//! claims.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use deployd_lab::{foreign_platform, nix_system, Lab, Node, UnitRuns, START_LIST, SWITCH_LOCK};
use support::{lab_options, wait_until};

/// Builds the host's system at `rev`, publishes it and fetches it on the host.
fn system_at(lab: &Lab, host: &Node, rev: &str) -> String {
    let system = lab.build_and_publish(rev).expect("build")[&host.name].clone();
    host.run(&["nix-store", "--realise", &system])
        .expect("fetch on the host");
    system
}

/// What one run of a switch said and how it ended.
struct Run {
    status: Option<i32>,
    output: String,
}

/// Runs `SYSTEM/bin/switch-to-configuration ACTION` on `host`, with `env`.
fn switch(host: &Node, system: &str, action: &str, env: &[(&str, &str)]) -> Run {
    let mut command = host.command(format!("{system}/bin/switch-to-configuration"), [action]);
    command.envs(env.iter().copied());
    let output = command.output().expect("switch-to-configuration");
    Run {
        status: output.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Where `link` on `host` points.
fn link(host: &Node, link: &str) -> Option<String> {
    std::fs::read_link(host.outside(link))
        .ok()
        .map(|target| target.to_string_lossy().into_owned())
}

/// What `systemctl is-active UNIT` says on `host`.
fn unit_state(host: &Node, unit: &str) -> String {
    let output = host
        .command("systemctl", ["is-active", unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A process on `host` holding the switch lock until `release` is removed.
fn hold_switch_lock(host: &Node, release: &str) -> Child {
    std::fs::write(host.outside(release), "").expect("release file");
    let wait = format!("while [ -e {release} ]; do sleep 0.1; done");
    host.command("flock", [SWITCH_LOCK, "/bin/sh", "-c", &wait])
        .stdin(Stdio::null())
        .spawn()
        .expect("flock")
}

#[test]
fn the_toy_switch_answers_as_nixos_does() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let host = lab.hosts()[0].clone();
    let name = host.name.clone();
    let first = system_at(&lab, &host, &lab.flake().head().expect("head"));

    // An unknown action: the usage, status 1, nothing done.
    let run = switch(&host, &first, "reboot", &[]);
    assert_eq!(run.status, Some(1), "{}", run.output);
    assert!(run.output.contains("Usage: "), "{}", run.output);
    assert!(host.switch_log().expect("log").is_empty());

    // The wrapper is makeWrapper's: it names the checks script's store path.
    let wrapper =
        std::fs::read_to_string(host.outside(&format!("{first}/bin/switch-to-configuration")))
            .expect("wrapper");
    assert!(
        wrapper.contains("export PRE_SWITCH_CHECK='/nix/store/"),
        "{wrapper}"
    );
    assert!(wrapper.contains(".switch-to-configuration-wrapped"));

    // A switch: boot loader, system, the units lab.target wants.
    let run = switch(&host, &first, "switch", &[]);
    assert_eq!(run.status, Some(0), "{}", run.output);
    assert_eq!(host.current_system(), Some(first.clone()));
    assert_eq!(
        link(&host, "/var/lib/lab/boot-default"),
        Some(first.clone())
    );
    assert_eq!(unit_state(&host, "lab-app.service"), "active");
    assert!(
        run.output
            .contains("the following new units were started: lab-app.service"),
        "{}",
        run.output
    );
    assert!(!host.outside(START_LIST).exists());
    let platform =
        std::fs::read_to_string(host.outside(&format!("{first}/system"))).expect("system file");
    assert_eq!(platform, nix_system());

    // Another switch holds the lock: refused at once, status 11.
    let release = "/run/lab-release-lock";
    let mut holder = hold_switch_lock(&host, release);
    assert!(wait_until(Duration::from_secs(10), || {
        switch(&host, &first, "test", &[]).status == Some(11)
    }));
    let run = switch(&host, &first, "test", &[]);
    assert!(
        run.output.contains("Could not acquire lock"),
        "{}",
        run.output
    );
    std::fs::remove_file(host.outside(release)).expect("release");
    assert!(holder.wait().expect("holder").success());

    // What an interrupted switch left to start is started by the next one.
    host.run(&["systemctl", "stop", "lab-app.service"])
        .expect("stop");
    std::fs::write(host.outside(START_LIST), "lab-app.service\n").expect("start list");
    let run = switch(&host, &first, "test", &[]);
    assert_eq!(run.status, Some(0), "{}", run.output);
    assert_eq!(unit_state(&host, "lab-app.service"), "active");
    assert!(!host.outside(START_LIST).exists());

    // An activation that fails: the switch goes on, then exits 2.
    host.set_switch_failure(true).expect("fail");
    let run = switch(&host, &first, "test", &[]);
    host.set_switch_failure(false).expect("succeed");
    assert_eq!(run.status, Some(2), "{}", run.output);
    assert!(run.output.contains("Failed to run activate script"));
    assert_eq!(host.current_system(), Some(first.clone()));

    // A specialisation is a system of its own, switched to on its own; a
    // system may claim another platform.
    lab.flake_mut()
        .commit_specialisation(&name, "rescue")
        .expect("commit");
    let rev = lab
        .flake_mut()
        .commit_foreign_platform(&name)
        .expect("commit");
    let special = system_at(&lab, &host, &rev);
    let rescue = link(&host, &format!("{special}/specialisation/rescue")).expect("rescue");
    assert_ne!(rescue, special);
    let run = switch(&host, &rescue, "test", &[]);
    assert_eq!(run.status, Some(0), "{}", run.output);
    assert_eq!(host.current_system(), Some(rescue.clone()));
    let platform =
        std::fs::read_to_string(host.outside(&format!("{special}/system"))).expect("system file");
    assert_eq!(platform, foreign_platform(&nix_system()));

    // Changed switch inhibitors: `check` and `switch` refuse, naming them,
    // before anything happens; `boot` does not check them.
    let rev = lab
        .flake_mut()
        .commit_changed_inhibitors(&name)
        .expect("commit");
    let inhibited = system_at(&lab, &host, &rev);
    let runs_before = host.switch_log().expect("log").len();
    for action in ["check", "switch"] {
        let run = switch(&host, &inhibited, action, &[]);
        assert_eq!(run.status, Some(1), "{action}: {}", run.output);
        assert!(
            run.output.contains("dbus-implementation: dbus -> broker")
                && run.output.contains("Pre-switch checks failed"),
            "{action}: {}",
            run.output
        );
    }
    assert_eq!(host.switch_log().expect("log").len(), runs_before);
    assert_eq!(host.current_system(), Some(rescue.clone()));
    let run = switch(&host, &inhibited, "boot", &[]);
    assert_eq!(run.status, Some(0), "{}", run.output);
    assert_eq!(
        link(&host, "/var/lib/lab/boot-default"),
        Some(inhibited.clone())
    );
    assert_eq!(host.current_system(), Some(rescue.clone()));
    let run = switch(&host, &inhibited, "check", &[("NIXOS_NO_CHECK", "1")]);
    assert_eq!(run.status, Some(0), "{}", run.output);

    // A pre-switch check of the system's own that fails.
    let rev = lab
        .flake_mut()
        .commit_failing_pre_switch_check(&name)
        .expect("commit");
    let refused = system_at(&lab, &host, &rev);
    let run = switch(&host, &refused, "check", &[]);
    assert_eq!(run.status, Some(1), "{}", run.output);
    assert!(
        run.output.contains("Pre-switch check 'labRefuses' failed"),
        "{}",
        run.output
    );

    // A new init interface: the boot loader gets it, then exit 100 and
    // nothing more.
    lab.flake_mut().commit_changed_system().expect("commit");
    let rev = lab
        .flake_mut()
        .commit_new_init_interface(&name)
        .expect("commit");
    let new_init = system_at(&lab, &host, &rev);
    let run = switch(&host, &new_init, "switch", &[]);
    assert_eq!(run.status, Some(100), "{}", run.output);
    assert!(run.output.contains("won't take"), "{}", run.output);
    assert_eq!(link(&host, "/var/lib/lab/boot-default"), Some(new_init));
    assert_eq!(host.current_system(), Some(rescue));

    // A unit lab.target wants fails: status 4, naming it; having failed
    // before, it fails again in the next switch, which starts lab.target.
    lab.flake_mut().commit_changed_system().expect("commit");
    let rev = lab
        .flake_mut()
        .commit_unit_wanted_by_target(&name, "lab-flaky.service", UnitRuns::Fails)
        .expect("commit");
    let flaky = system_at(&lab, &host, &rev);
    for round in ["first", "second"] {
        let run = switch(&host, &flaky, "switch", &[]);
        assert_eq!(run.status, Some(4), "{round}: {}", run.output);
        assert!(
            run.output
                .contains("warning: the following units failed: lab-flaky.service"),
            "{round}: {}",
            run.output
        );
        assert_eq!(unit_state(&host, "lab-flaky.service"), "failed");
    }
    assert_eq!(host.current_system(), Some(flaky));
    lab.down().expect("lab down");
}
