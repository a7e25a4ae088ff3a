//! Never leave a host broken: magic rollback when the operator cannot
//! confirm (a switch that breaks the network), health checks that roll back,
//! reboot detection, and a daemon killed or restarted mid-deploy.

mod support;

use std::time::Duration;

use deployd_lab::{Lab, LabOptions};
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, DeployId, Request};
use support::deployd::{
    deploy, deploy_message, get, key, post, start_fleet, status, trusted, wait_for_deployd_restart,
    wait_for_end, wait_for_state, OneHost,
};
use support::push::{system_at, text, PushLab};
use support::{lab_options, wait_until};

#[test]
fn a_switch_that_breaks_the_network_rolls_itself_back() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let first = fleet.lab.flake().head().expect("head");
    assert_eq!(fleet.push(&["--all"]).status.code(), Some(0));
    fleet
        .lab
        .flake_mut()
        .commit_network_breaking(&host.name)
        .expect("commit");

    let output = fleet.push(&["--all", "--confirm", "20"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&host.name) && l.contains("rolled_back")),
        "{stdout}"
    );
    assert!(stdout.contains("not confirmed within 20 s"), "{stdout}");
    // Reachable again, on the previous system.
    let status = status(&fleet.lab, &host);
    assert_eq!(
        status.current_system,
        Some(system_at(fleet.lab.flake().dir(), &first, &host.name))
    );
    let output = fleet.push(&["status"]);
    let (stdout, _) = text(&output);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&host.name))
        .expect("status line");
    assert!(
        line.contains("rolled_back") && line.contains("not confirmed"),
        "{line}"
    );
}

#[test]
fn a_confirmed_deploy_succeeds() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let rev = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let output = fleet.push(&["--all", "--confirm", "30"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );
    let last = status(&fleet.lab, &host).last_deploy.expect("a deploy");
    let record = support::deployd::record(&fleet.lab, &host, last.deploy_id.as_str());
    assert!(
        record
            .phases
            .iter()
            .any(|p| p.state == DeployState::AwaitingConfirm),
        "{record:?}"
    );
    assert_eq!(record.state, DeployState::Succeeded);
}

/// One host checking its health with `check`, and two systems to deploy.
fn health_lab(check: &str) -> (OneHost, String, String) {
    let mut one = OneHost::with_config(check);
    let first = one.head_system();
    let second_rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&second_rev);
    (one, first, second)
}

#[test]
fn a_failing_health_command_rolls_back() {
    let check = "\n[health]\ndeadline_s = 3\ninterval_s = 1\n[[health.commands]]\ncommand = [\"/bin/sh\", \"-c\", \"test -e /var/lib/lab/healthy || { echo not healthy; exit 1; }\"]\n";
    let (one, first, second) = health_lab(check);
    let host = &one.host;
    std::fs::create_dir_all(host.outside("/var/lib/lab")).expect("dir");
    std::fs::write(host.outside("/var/lib/lab/healthy"), "").expect("healthy");
    let record = one.deploy_to_end("healthy", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(record
        .phases
        .iter()
        .any(|p| p.state == DeployState::CheckingHealth));

    std::fs::remove_file(host.outside("/var/lib/lab/healthy")).expect("unhealthy");
    let record = one.deploy_to_end("unhealthy", &second, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let error = record.error.expect("error");
    assert!(
        error.message.contains("health checks failed") && error.message.contains("not healthy"),
        "{}",
        error.message
    );
    assert_eq!(host.current_system(), Some(first.clone()));
    assert_eq!(host.profile_system(), Some(first));
}

#[test]
fn a_failing_http_check_rolls_back() {
    let check =
        "\n[health]\ndeadline_s = 2\ninterval_s = 1\nhttp = [\"http://127.0.0.1:8080/health\"]\n";
    let (mut one, first, second) = health_lab(check);
    let host = one.host.clone();
    // A web server on the host, answering /health while it runs.
    let root = one.lab.dir().join("health-root");
    std::fs::create_dir_all(&root).expect("dir");
    std::fs::write(root.join("health"), "ok").expect("page");
    let serve: Vec<std::ffi::OsString> = vec![
        one.lab.lab_binary().into(),
        "serve-cache".into(),
        "--root".into(),
        root.into_os_string(),
        "--listen".into(),
        "127.0.0.1:8080".into(),
    ];
    one.lab.supervise(&host, "web", serve).expect("web server");
    assert!(wait_until(Duration::from_secs(10), || one
        .lab
        .supervised_pid(&host, "web")
        .is_some()));
    std::thread::sleep(Duration::from_millis(500));
    let record = one.deploy_to_end("served", &first, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");

    one.lab
        .stop_supervised(&host, "web")
        .expect("stop the web server");
    let record = one.deploy_to_end("unserved", &second, Action::Switch);
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    assert!(record
        .error
        .expect("error")
        .message
        .contains("GET http://127.0.0.1:8080/health"));
    assert_eq!(host.current_system(), Some(first));
}

#[test]
fn reboot_needed_for_a_new_kernel_only() {
    let mut one = OneHost::up();
    let first = one.head_system();
    one.deploy_to_end("first", &first, Action::Switch);
    // The host "booted" the first system.
    std::os::unix::fs::symlink(&first, one.host.outside("/run/booted-system")).expect("booted");

    let same_kernel = one.lab.flake_mut().commit_changed_system().expect("commit");
    let same = one.system_at(&same_kernel);
    let record = one.deploy_to_end("same-kernel", &same, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded);
    assert!(!record.reboot_required);
    assert!(!status(&one.lab, &one.host).reboot_required);

    let new_kernel = one
        .lab
        .flake_mut()
        .commit_new_kernel("6.12.0")
        .expect("commit");
    let newer = one.system_at(&new_kernel);
    let record = one.deploy_to_end("new-kernel", &newer, Action::Switch);
    assert!(record.reboot_required, "{record:?}");
    assert!(status(&one.lab, &one.host).reboot_required);
    let metrics = support::deployd::http()
        .get(format!("{}/metrics", one.lab.deployd_url(&one.host)))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(metrics.contains("deployd_reboot_required 1"), "{metrics}");
}

#[test]
fn killed_while_awaiting_confirmation_the_deploy_still_needs_its_confirm() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let ops = key("ops-1");
    start_fleet(&mut lab, &[trusted(&ops, None)]);
    let host = lab.hosts()[0].clone();
    let system = lab
        .build_and_publish(&lab.flake().head().expect("head"))
        .expect("build")[&host.name]
        .clone();
    let mut message = deploy_message(&host, "confirm-me", &system, Action::Switch);
    if let Request::Deploy(request) = &mut message.request {
        request.confirm_within_s = Some(60);
    }
    deploy(&lab, &host, &message, &ops);
    wait_for_state(
        &lab,
        &host,
        "confirm-me",
        "awaiting_confirm",
        Duration::from_secs(60),
    );

    let pid = lab.deployd_pid(&host).expect("deployd");
    lab.signal_deployd(&host, "KILL").expect("kill -9 deployd");
    wait_for_deployd_restart(&lab, &host, pid);
    wait_for_state(
        &lab,
        &host,
        "confirm-me",
        "awaiting_confirm",
        Duration::from_secs(30),
    );

    let id: DeployId = "confirm-me".parse().expect("id");
    let confirm = deployd_protocol::Message::new(
        host.name.parse().expect("host"),
        Request::Confirm(deployd_protocol::DeployRef::new(id).expect("nonce")),
        support::deployd::now(),
        60,
    );
    let url = format!("{}/v1/deploys/confirm-me/confirm", lab.deployd_url(&host));
    let (code, answer) = post(&url, confirm.sign(&[&ops]).to_json());
    assert_eq!(code, 200, "{answer}");
    let record = wait_for_end(&lab, &host, "confirm-me", Duration::from_secs(30));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(host.switch_log().expect("log").len(), 1, "activated twice");
    let (code, answer) = get(&format!("{}/v1/deploys/confirm-me", lab.deployd_url(&host)));
    assert_eq!((code, answer["state"].as_str()), (200, Some("succeeded")));
}

#[test]
fn a_switch_that_restarts_the_daemon_still_succeeds() {
    let one = OneHost::up();
    let system = one.head_system();
    let pid = one.lab.deployd_pid(&one.host).expect("deployd");
    std::fs::create_dir_all(one.host.outside("/var/lib/lab")).expect("dir");
    std::fs::write(
        one.host.outside("/var/lib/lab/switch-kills"),
        pid.to_string(),
    )
    .expect("flag");
    let record = one.deploy_to_end("restarts", &system, Action::Switch);
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_ne!(
        one.lab.deployd_pid(&one.host),
        Some(pid),
        "deployd was not restarted"
    );
    assert_eq!(one.host.switch_log().expect("log").len(), 1);
    assert_eq!(one.host.current_system(), Some(system));
}

#[test]
fn a_system_with_another_deployd_restarts_the_daemon_after_the_deploy() {
    // Where systemd is not PID 1 (a supervisor restarts deployd); under
    // systemd: systemd_units.rs.
    let options = LabOptions {
        systemd: false,
        ..lab_options(1)
    };
    let mut lab = Lab::up(&options).expect("lab up");
    let ops = key("ops-1");
    let host = lab.hosts()[0].clone();
    lab.write_deployd_config(&host, &[trusted(&ops, None)], "")
        .expect("config");
    // deployd runs from the host's store, as on NixOS.
    let binary = lab.deployd_binary().expect("deployd");
    let added = host
        .run(&["nix-store", "--add", binary.to_str().expect("utf-8")])
        .expect("add");
    let in_store = String::from_utf8(added.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let argv = host.mounted_argv(&in_store, ["--config", deployd_lab::DEPLOYD_CONFIG]);
    lab.supervise(&host, "deployd", argv).expect("supervise");
    deployd_lab::wait_for_port(
        (host.address, deployd_lab::DEPLOYD_PORT).into(),
        Duration::from_secs(20),
    )
    .expect("up");

    let same = lab
        .flake_mut()
        .commit("The same deployd", |settings| {
            settings.deployd_exec = in_store.clone()
        })
        .expect("commit");
    let system = lab.build_and_publish(&same).expect("build")[&host.name].clone();
    let pid = lab.deployd_pid(&host).expect("pid");
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "same-daemon", &system, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(60));
    assert_eq!(
        record.state,
        DeployState::Succeeded,
        "{:?}",
        record.log_tail
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        lab.deployd_pid(&host),
        Some(pid),
        "restarted without a new deployd"
    );

    let other = lab
        .flake_mut()
        .commit("Another deployd", |settings| {
            settings.deployd_exec =
                "/nix/store/00000000000000000000000000000000-deployd-2/bin/deployd".into()
        })
        .expect("commit");
    let system = lab.build_and_publish(&other).expect("build")[&host.name].clone();
    let id = deploy(
        &lab,
        &host,
        &deploy_message(&host, "new-daemon", &system, Action::Switch),
        &ops,
    );
    assert!(
        wait_until(Duration::from_secs(30), || lab
            .deployd_pid(&host)
            .is_some_and(|p| p != pid)),
        "deployd did not restart for its new version"
    );
    let record = wait_for_end(&lab, &host, &id, Duration::from_secs(30));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(
        record
            .log_tail
            .iter()
            .any(|l| l.contains("runs another deployd")),
        "{:?}",
        record.log_tail
    );
    assert_eq!(host.switch_log().expect("log").len(), 2);
}
