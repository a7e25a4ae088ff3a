//! Tests of the detached switch: its wrapper, the transient unit's argv,
//! reading its files, waiting for it (woken, not polled), stopping it.

use super::*;
use std::path::PathBuf;

fn launch(dir: &Path, system: &str) -> SwitchLaunch {
    SwitchLaunch {
        system: system.to_owned(),
        action: Action::Switch,
        unit: None,
        log_file: dir.join("switch.log"),
        status_file: dir.join("switch.status"),
        pid_file: dir.join("switch.pid"),
        boot_id: None,
    }
}

/// A daemon over `dir` (its state in `dir/state`) whose switches may take
/// `switch_timeout_s`, with its switch lock in `dir/run-nixos`.
fn daemon_in(dir: &Path, switch_timeout_s: u64) -> std::sync::Arc<Daemon> {
    let ops =
        deployd_protocol::SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache =
        deployd_protocol::SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    let text = format!(
        "hostname = \"sambirano\"\nstate_dir = \"{}\"\n\
         [[trusted_keys]]\nkey = \"{}\"\n\
         [nix]\nsubstituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
         [activation]\nswitch_timeout_s = {switch_timeout_s}\nswitch_lock = \"{}\"\n",
        dir.join("state").display(),
        ops.public_key(),
        cache.public_key(),
        dir.join("run-nixos/switch-to-configuration.lock").display(),
    );
    let config = crate::config::Config::from_toml(&text, &dir.join("config.toml")).expect("config");
    Daemon::open(config, crate::Environment::default()).expect("daemon")
}

/// A switch whose wrapper runs (its pid file names a live process) and
/// has not ended; the process is killed on drop.
struct RunningSwitch {
    launch: SwitchLaunch,
    process: std::process::Child,
}

impl RunningSwitch {
    fn start(dir: &Path) -> RunningSwitch {
        let process = std::process::Command::new("/bin/sleep")
            .arg("120")
            .spawn()
            .expect("sleep");
        let launch = launch(dir, "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x");
        std::fs::write(&launch.pid_file, format!("{}\n", process.id())).expect("pid");
        RunningSwitch { launch, process }
    }
}

impl Drop for RunningSwitch {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_stopped_on_timeout_leaves_no_lists_for_the_switch_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = daemon_in(dir.path(), 1);
    let lists = dir.path().join("run-nixos");
    std::fs::create_dir_all(&lists).expect("dir");
    for name in UNIT_LISTS {
        std::fs::write(lists.join(name), "new-system-only.service\n").expect("list");
    }
    std::fs::write(lists.join("switch-to-configuration.lock"), "").expect("lock");
    // A switch that leads its process group, as the wrapper does.
    let mut process = std::process::Command::new("/bin/sleep");
    std::os::unix::process::CommandExt::process_group(&mut process, 0);
    let mut process = process.arg("120").spawn().expect("sleep");
    let launch = launch(dir.path(), "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x");
    std::fs::write(&launch.pid_file, format!("{}\n", process.id())).expect("pid");
    let id: DeployId = "slow".parse().expect("id");
    let outcome = tokio::time::timeout(Duration::from_secs(30), wait(&daemon, &id, &launch))
        .await
        .expect("the timeout was seen");
    let _ = process.kill();
    let _ = process.wait();
    assert!(
        matches!(&outcome, SwitchOutcome::Failed(why) if why.contains("was stopped")),
        "{outcome:?}"
    );
    for name in UNIT_LISTS {
        assert!(!lists.join(name).exists(), "{name} is left");
    }
    assert!(lists.join("switch-to-configuration.lock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_switch_is_not_polled() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = daemon_in(dir.path(), 900);
    let switch = RunningSwitch::start(dir.path());
    let id: DeployId = "quiet".parse().expect("id");
    let waiting = tokio::spawn({
        let (daemon, launch) = (daemon.clone(), switch.launch.clone());
        async move { wait(&daemon, &id, &launch).await }
    });
    // How often the waiter opens the switch's pid file while nothing
    // changes: a poll every 100 ms opens it about 20 times in 2 s.
    let inotify = inotify::Inotify::init().expect("inotify");
    inotify
        .watches()
        .add(dir.path(), inotify::WatchMask::OPEN)
        .expect("watch");
    let mut events = inotify.into_event_stream([0u8; 4096]).expect("stream");
    let pid_name = switch.launch.pid_file.file_name().expect("name").to_owned();
    let mut opens = 0;
    let quiet = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            () = &mut quiet => break,
            event = events.next() => {
                let event = event.expect("an event").expect("an event");
                if event.name.as_deref() == Some(pid_name.as_os_str()) {
                    opens += 1;
                }
            }
        }
    }
    assert!(
        opens <= 4,
        "the pid file was opened {opens} times in 2 s: the switch is polled"
    );
    std::fs::write(&switch.launch.status_file, "0\n").expect("status");
    let outcome = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the outcome was seen")
        .expect("the waiter");
    assert_eq!(outcome, SwitchOutcome::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_and_status_are_seen_well_before_the_fallback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = daemon_in(dir.path(), 900);
    let switch = RunningSwitch::start(dir.path());
    let id: DeployId = "prompt".parse().expect("id");
    // Nothing but a change can wake the wait within a minute.
    let fallback = Duration::from_secs(60);
    let waiting = tokio::spawn({
        let (daemon, launch) = (daemon.clone(), switch.launch.clone());
        async move { wait_woken(&daemon, &id, &launch, fallback).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    std::fs::write(&switch.launch.log_file, "switching\n").expect("output");
    let streamed = streamed_file(&switch.launch);
    while read_line(&streamed).as_deref() != Some("10") {
        assert!(
            started.elapsed() < fallback / 2,
            "the output was not streamed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = std::time::Instant::now();
    std::fs::write(&switch.launch.status_file, "0\n").expect("status");
    let outcome = tokio::time::timeout(fallback / 2, waiting)
        .await
        .expect("the outcome was seen before the fallback")
        .expect("the waiter");
    assert_eq!(outcome, SwitchOutcome::Succeeded);
    assert!(started.elapsed() < fallback / 2);
}

#[test]
fn only_a_group_leader_is_killed_as_a_group() {
    // This test process does not lead its group (cargo's runner does),
    // pid 1 is never a target, and a child in its own group leads it.
    let mut child = std::process::Command::new("/bin/sleep");
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child.arg("5").spawn().expect("sleep");
    assert!(leads_its_group(child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let mut sibling = std::process::Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .expect("sleep");
    assert!(!leads_its_group(sibling.id()));
    let _ = sibling.kill();
    let _ = sibling.wait();
}

#[test]
fn the_transient_unit_is_started_as_nixos_rebuild_starts_it() {
    let launch = launch(
        Path::new("/s"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
    );
    let argv = transient_unit_argv(
        "deployd-switch-d-1",
        &launch,
        [(
            "LOCALE_ARCHIVE",
            "/nix/store/l-glibc-locales/lib/locale/locale-archive".to_owned(),
        )],
    );
    assert_eq!(
        argv[..8],
        [
            "--unit=deployd-switch-d-1",
            "--description=deployd switch-to-configuration",
            "--collect",
            "--service-type=exec",
            "--no-ask-password",
            "--property=StandardOutput=append:/s/switch.log",
            "--property=StandardError=append:/s/switch.log",
            "--setenv=LOCALE_ARCHIVE=/nix/store/l-glibc-locales/lib/locale/locale-archive",
        ]
    );
    assert_eq!(argv[8], "/bin/sh");
    assert_eq!(argv[9..].len(), wrapper_argv(&launch).len());
    assert_eq!(
        argv[10],
        r#"echo $$$$ > "$$4"; "$$1" "$$2"; echo $$? > "$$3""#
    );
}

#[test]
fn dollars_are_doubled_for_systemd() {
    assert_eq!(
        escape_exec_start(r#"echo $$ > "$4"; "$1" "$2"; echo $? > "$3""#),
        r#"echo $$$$ > "$$4"; "$$1" "$$2"; echo $$? > "$$3""#
    );
    assert_eq!(
        escape_exec_start("/nix/store/x/bin/a"),
        "/nix/store/x/bin/a"
    );
}

#[test]
fn the_wrapper_runs_the_script_and_records_its_status_and_pid() {
    let argv = wrapper_argv(&launch(
        Path::new("/s"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
    ));
    assert_eq!(argv[0], "-c");
    assert_eq!(
        argv[3..],
        [
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x/bin/switch-to-configuration",
            "switch",
            "/s/switch.status",
            "/s/switch.pid"
        ]
    );
    assert_eq!(
        unit_name(&"d-1".parse().expect("id"), SwitchKind::Rollback),
        "deployd-switch-d-1-2"
    );
}

#[test]
fn a_half_written_file_is_not_a_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("switch.status");
    for partial in ["", "1", "0"] {
        std::fs::write(&file, partial).expect("write");
        assert_eq!(read_status(&file), None, "{partial:?}");
    }
    std::fs::write(&file, "0\n").expect("write");
    assert_eq!(read_status(&file), Some(SwitchOutcome::Succeeded));
    std::fs::write(&file, "127\n").expect("write");
    assert_eq!(
        read_status(&file),
        Some(SwitchOutcome::Exited(SwitchStatus::Other(127)))
    );
    std::fs::write(&file, "12").expect("write");
    assert_eq!(read_pid(&file), None);
}

#[test]
fn the_wrapper_reports_exit_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (script, expected) in [
        ("exit 0", SwitchOutcome::Succeeded),
        ("exit 3", SwitchOutcome::Exited(SwitchStatus::Other(3))),
    ] {
        let system: PathBuf = dir.path().join("system");
        std::fs::create_dir_all(system.join("bin")).expect("dir");
        let script_path = system.join("bin/switch-to-configuration");
        std::fs::write(&script_path, format!("#!/bin/sh\n{script}\n")).expect("write");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script_path)
            .status()
            .expect("chmod");
        let launch = launch(dir.path(), &system.to_string_lossy());
        let _ = std::fs::remove_file(&launch.status_file);
        // As in a transient unit on NixOS: nothing on PATH.
        let ran = std::process::Command::new("/bin/sh")
            .args(wrapper_argv(&launch))
            .env_clear()
            .env("PATH", "/run/current-system/sw/bin")
            .status()
            .expect("sh");
        assert!(ran.success());
        assert_eq!(read_status(&launch.status_file), Some(expected));
        assert!(read_pid(&launch.pid_file).is_some());
    }
}
