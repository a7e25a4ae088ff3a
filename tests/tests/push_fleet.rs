//! `push` against a lab of real deployd hosts: a whole fleet from a real git
//! revision, a host down, the downgrade guard, a dirty work tree, rollback.

mod support;

use deployd_protocol::api::DeployState;
use support::deployd::status;
use support::push::{system_at, text, PushLab};

#[test]
fn push_all_deploys_exactly_that_commit_and_status_agrees() {
    let fleet = PushLab::up(3);
    let lab = &fleet.lab;
    let rev = lab.flake().head().expect("head");
    let output = fleet.push(&["--all", &rev[..10]]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for host in lab.hosts() {
        let expected = system_at(lab.flake().dir(), &rev, &host.name);
        assert_eq!(
            host.current_system().as_ref(),
            Some(&expected),
            "{}",
            host.name
        );
        assert_eq!(host.profile_system().as_ref(), Some(&expected));
        let status = status(lab, host);
        let current = status.current_deploy.expect("current deploy");
        assert_eq!(current.rev.as_ref().map(|r| r.as_str()), Some(rev.as_str()));
        assert!(
            stdout.lines().any(|l| l.starts_with(&host.name)
                && l.contains("succeeded")
                && l.contains(&rev[..12])),
            "{stdout}"
        );
        // push keeps a GC root for what it built.
        let root = std::fs::read_link(fleet.gc_root(&host.name)).expect("gc root");
        assert_eq!(root.to_string_lossy(), expected);
    }
    let output = fleet.push(&["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for host in lab.hosts() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&host.name))
            .expect("a line per host");
        assert!(
            line.contains(&rev[..12]) && line.contains("succeeded"),
            "{line}"
        );
    }
}

#[test]
fn a_host_down_does_not_stop_the_others() {
    let mut fleet = PushLab::up(3);
    let down = fleet.lab.hosts()[1].clone();
    fleet.lab.stop_deployd(&down).expect("stop deployd");
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let rev = fleet.lab.flake().head().expect("head");
    for host in fleet.lab.hosts() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&host.name))
            .expect("a line per host");
        if host.name == down.name {
            assert!(line.contains("unreachable"), "{line}");
            assert_eq!(host.current_system(), None);
        } else {
            assert!(line.contains("succeeded"), "{line}");
            assert_eq!(
                host.current_system(),
                Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
            );
        }
    }
    let output = fleet.push(&["status"]);
    assert_eq!(output.status.code(), Some(1));
    let (stdout, _) = text(&output);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&down.name) && l.contains("unreachable")),
        "{stdout}"
    );
}

#[test]
fn a_revision_that_does_not_descend_needs_allow_downgrade() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let old = fleet.lab.flake().head().expect("head");
    let new = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    assert_eq!(fleet.push(&["--all", &new]).status.code(), Some(0));

    let output = fleet.push(&["--all", &old]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("refused")
            && stdout.contains("does not descend")
            && stdout.contains("--allow-downgrade"),
        "{stdout}"
    );
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &new, &host.name))
    );

    let output = fleet.push(&["--all", "--allow-downgrade", &old]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &old, &host.name))
    );
}

#[test]
fn a_host_that_fails_its_build_or_refuses_a_downgrade_does_not_stop_the_others() {
    let mut fleet = PushLab::up(2);
    let (broken, other) = (fleet.lab.hosts()[0].clone(), fleet.lab.hosts()[1].clone());
    let first = fleet.lab.flake().head().expect("head");
    assert_eq!(fleet.push(&["--all", &first]).status.code(), Some(0));

    // One host's system fails to build: the other is deployed all the same.
    let name = broken.name.clone();
    let second = fleet
        .lab
        .flake_mut()
        .commit("One system does not build", |settings| {
            settings.label += 1;
            settings.fail_build = vec![name];
        })
        .expect("commit");
    let output = fleet.push(&["--all", &second]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        line_of(&stdout, &broken.name).contains("build_failed"),
        "{stdout}"
    );
    assert!(
        line_of(&stdout, &other.name).contains("succeeded"),
        "{stdout}"
    );
    assert_eq!(
        other.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &second, &other.name))
    );
    assert_eq!(
        broken.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &first, &broken.name))
    );

    // One host refuses a downgrade: the other is deployed all the same.
    let third = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    assert_eq!(
        fleet.push(&["--host", &other.name, &third]).status.code(),
        Some(0)
    );
    let output = fleet.push(&["--all", &first]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        line_of(&stdout, &other.name).contains("refused"),
        "{stdout}"
    );
    assert!(
        line_of(&stdout, &broken.name).contains("succeeded"),
        "{stdout}"
    );
    assert_eq!(
        other.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &third, &other.name))
    );
}

/// The summary line of `host`.
fn line_of(stdout: &str, host: &str) -> String {
    stdout
        .lines()
        .find(|line| line.starts_with(host))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_dirty_work_tree_does_not_leak_into_the_build() {
    let fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let rev = fleet.lab.flake().head().expect("head");
    let settings = fleet.lab.flake().dir().join("settings.nix");
    let committed = std::fs::read_to_string(&settings).expect("settings");
    std::fs::write(
        &settings,
        committed.replace("label = \"1\"", "label = \"dirty\""),
    )
    .expect("dirty");
    let output = fleet.push(&["--all"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let system = host.current_system().expect("a system");
    assert_eq!(system, system_at(fleet.lab.flake().dir(), &rev, &host.name));
    assert!(
        system.ends_with("-1") && !system.contains("dirty"),
        "{system}"
    );
}

#[test]
fn push_rollback_returns_to_the_previous_system() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let first = fleet.lab.flake().head().expect("head");
    assert_eq!(fleet.push(&["--all"]).status.code(), Some(0));
    let second = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    assert_eq!(fleet.push(&["--all"]).status.code(), Some(0));
    let first_system = system_at(fleet.lab.flake().dir(), &first, &host.name);
    assert_ne!(host.current_system(), Some(first_system.clone()));

    let output = fleet.push(&["rollback", "--host", &host.name]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(host.current_system(), Some(first_system.clone()));
    assert_eq!(host.profile_system(), Some(first_system));
    assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
    let status = status(&fleet.lab, &host);
    let last = status
        .last_deploy
        .expect("the rollback is a deploy of its own");
    assert_eq!(last.state, DeployState::Succeeded);
    assert_eq!(
        status
            .current_deploy
            .and_then(|d| d.rev)
            .map(|r| r.to_string()),
        Some(first)
    );
    let _ = second;
}

#[test]
fn push_follows_a_host_whose_daemon_restarts_mid_deploy() {
    let fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    host.set_switch_delay(3).expect("slow switch");
    let push = fleet.spawn_push(&["--all"]);
    assert!(
        support::wait_until(std::time::Duration::from_secs(60), || host
            .switch_log()
            .expect("log")
            .len()
            == 1),
        "the switch never started"
    );
    // The daemon dies during the switch, as if the switch restarted it.
    fleet
        .lab
        .signal_deployd(&host, "KILL")
        .expect("kill -9 deployd");

    let output = push.wait_with_output().expect("push ends");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&host.name) && l.contains("succeeded")),
        "{stdout}"
    );
    // Across the restart, what the new daemon logged is shown, once.
    let activated = stderr
        .lines()
        .filter(|line| line.contains(&format!("{}: activated /nix/store/", host.name)))
        .count();
    assert_eq!(activated, 1, "{stderr}");
    assert_eq!(host.switch_log().expect("log").len(), 1, "switched twice");
    let rev = fleet.lab.flake().head().expect("head");
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );
}

#[test]
fn on_a_terminal_push_shows_one_live_line_per_host() {
    let fleet = PushLab::up(2);
    let push = deployd_lab::sibling_binary(fleet.lab.lab_binary(), "push").expect("push");
    let socket = format!("deployd-test-{}", std::process::id());
    let script = format!(
        "cd {} && DEPLOYD_KEY_FILE={} XDG_STATE_HOME={} NIX_CONFIG='substituters =' {} --all; echo EXIT=$?; sleep 60",
        fleet.lab.flake().dir().display(),
        fleet.key_file.display(),
        fleet.state_home.path().display(),
        push.display(),
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux)")
    };
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        "push",
        "-x",
        "160",
        "-y",
        "40",
        &script
    ])
    .status
    .success());
    let mut screen = String::new();
    let ended = support::wait_until(std::time::Duration::from_secs(120), || {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "push"]).stdout)
            .into_owned();
        screen.contains("EXIT=")
    });
    tmux(&["kill-server"]);
    assert!(ended, "push did not end:\n{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    for host in fleet.lab.hosts() {
        // The live line, redrawn in place, ends on the final phase and time.
        let live = screen.lines().any(|l| {
            let elapsed = l.split_whitespace().any(|word| {
                let word = word.trim_end_matches(',');
                word.len() > 1
                    && word.ends_with('s')
                    && word[..word.len() - 1].chars().all(|c| c.is_ascii_digit())
            });
            l.trim_start().starts_with(&host.name)
                && l.contains("succeeded")
                && elapsed
                && l.contains("paths fetched")
        });
        assert!(live, "no live line for {}:\n{screen}", host.name);
    }
    // No plain timestamped lines on a terminal.
    let plain = screen.lines().any(|l| {
        let b = l.as_bytes();
        b.len() > 9
            && b[2] == b':'
            && b[5] == b':'
            && b[8] == b' '
            && b[..2].iter().all(u8::is_ascii_digit)
    });
    assert!(!plain, "plain lines on a terminal:\n{screen}");
    assert!(
        screen.contains("HOST") && screen.contains("RESULT"),
        "{screen}"
    );
}

#[test]
fn push_signs_its_reads_for_hosts_that_require_it() {
    let fleet = PushLab::with_config(1, "read_requires_signature = true");
    let host = fleet.lab.hosts()[0].clone();
    // Unsigned reads are refused...
    let url = format!("{}/v1/status", fleet.lab.deployd_url(&host));
    let (code, _) = support::deployd::get(&url);
    assert_eq!(code, 400);
    // ...and push, which signs them, deploys and reports all the same.
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let rev = fleet.lab.flake().head().expect("head");
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );
    let output = fleet.push(&["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&rev[..12]), "{stdout}");
}
