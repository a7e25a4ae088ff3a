//! Running `switch-to-configuration` so that it outlives deployd: a switch
//! that restarts deployd itself must still complete, and its outcome must
//! still be known. With systemd it runs in a transient unit
//! (`systemd-run`); without, as a detached process in its own process group.
//! Either way a small wrapper writes its pid when it starts and the script's
//! exit status when it ends, and the daemon (this one, or the next after a
//! restart) waits for that status while it streams the switch's output into
//! the deploy's log.
//!
//! A launch is planned (its files named) and written into the deploy's
//! record before it is started, so a restarted daemon always knows whether a
//! switch may have run. The wait is woken by changes to the switch's files
//! (inotify, [`watch`]), with a slow timer for what files cannot tell.

mod lock;
mod status;
mod watch;

pub use lock::is_held as lock_is_held;
pub use status::{SwitchStatus, ACTIVATION_FAILED, PRE_SWITCH_CHECKS_FAILED};

use std::path::Path;
use std::time::Duration;

use deployd_protocol::{Action, DeployId};

use crate::daemon::Daemon;
use crate::state::{SwitchKind, SwitchLaunch};
use deployd_command::{self as command, CommandError, Invocation};

/// Writes the wrapper's pid, runs the script, writes its exit status.
/// `$1` script, `$2` action, `$3` status file, `$4` pid file.
///
/// Shell builtins only: a transient unit on NixOS has no tools on its `PATH`
/// (no `mv`, no `cat`), and `/bin/sh` is all NixOS keeps outside the store.
/// Each file is one line written by one `echo`; a reader counts it only once
/// its newline is there, so a half-written file is never taken for a result.
const WRAPPER: &str = r#"echo $$ > "$4"; "$1" "$2"; echo $? > "$3""#;

/// How often a running switch is looked at when none of its files changed:
/// inotify wakes the wait as the switch writes its output, pid and status,
/// but cannot tell that its process vanished without writing its status,
/// nor that the start grace or the switch timeout ran out.
const FALLBACK: Duration = Duration::from_secs(1);
/// How often a stopped switch is looked at until its process is gone (a
/// process's end changes no file).
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long a planned switch may take to write its pid before it counts as
/// never started.
const START_GRACE: Duration = Duration::from_secs(10);

/// How a switch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// Exit status 0.
    Succeeded,
    /// Another exit status, named.
    Exited(SwitchStatus),
    /// It vanished, or it ran out of time (and was stopped).
    Failed(String),
    /// It was planned but never started (the daemon stopped in between).
    NeverStarted,
}

/// The argv of a detached switch: the wrapper around the system's script.
pub fn wrapper_argv(launch: &SwitchLaunch) -> Vec<String> {
    vec![
        "-c".into(),
        WRAPPER.into(),
        "deployd-switch".into(),
        format!("{}/bin/switch-to-configuration", launch.system),
        launch.action.as_str().into(),
        launch.status_file.to_string_lossy().into_owned(),
        launch.pid_file.to_string_lossy().into_owned(),
    ]
}

/// The transient unit a switch runs in, under systemd.
pub fn unit_name(id: &DeployId, kind: SwitchKind) -> String {
    format!("deployd-switch-{id}-{}", kind.number())
}

/// What a switch activates: a system, with an action.
#[derive(Debug, Clone, Copy)]
pub struct SwitchTarget<'a> {
    /// The system whose `switch-to-configuration` runs.
    pub system: &'a str,
    /// What it is told to do.
    pub action: Action,
}

/// Names the files of deploy `id`'s forward or rollback switch to `target`.
pub fn plan(
    daemon: &Daemon,
    id: &DeployId,
    kind: SwitchKind,
    target: SwitchTarget<'_>,
) -> SwitchLaunch {
    let files = daemon.switch_files(id, kind);
    SwitchLaunch {
        system: target.system.to_owned(),
        action: target.action,
        unit: daemon.systemd.then(|| unit_name(id, kind)),
        log_file: files.log_file,
        status_file: files.status_file,
        pid_file: files.pid_file,
        boot_id: crate::system::boot_id(),
    }
}

/// Starts a planned switch.
pub async fn start(
    daemon: &Daemon,
    id: &DeployId,
    launch: &SwitchLaunch,
) -> Result<(), CommandError> {
    for stale in [&launch.status_file, &launch.pid_file] {
        let _ = std::fs::remove_file(stale);
    }
    let wrapper = wrapper_argv(launch);
    match &launch.unit {
        Some(unit) => {
            let passed = PASSED_ENVIRONMENT
                .iter()
                .filter_map(|name| Some((*name, std::env::var(name).ok()?)));
            let args = transient_unit_argv(unit, launch, passed);
            let systemd_run = &daemon.config().file.activation.systemd_run;
            let invocation = Invocation::new(systemd_run, args, Duration::from_secs(30));
            command::run(&invocation, |line| daemon.log(id, line)).await?;
        }
        None => {
            let invocation = Invocation::new("/bin/sh", wrapper, daemon.config().switch_timeout());
            command::spawn_detached(&invocation, &launch.log_file)?;
        }
    }
    Ok(())
}

/// What nixos-rebuild passes on to the switch's transient unit from its own
/// environment (nixpkgs `pkgs/by-name/ni/nixos-rebuild-ng`, `services.py`).
const PASSED_ENVIRONMENT: [&str; 2] = ["LOCALE_ARCHIVE", "NIXOS_INSTALL_BOOTLOADER"];

/// `systemd-run`'s arguments for the switch `launch` in transient unit
/// `unit`, as nixos-rebuild starts its switch: `--service-type=exec`, so that
/// a switch that cannot be executed is an error of `systemd-run` at once,
/// `--no-ask-password`, and the `environment` it passes on.
fn transient_unit_argv<'a>(
    unit: &str,
    launch: &SwitchLaunch,
    environment: impl IntoIterator<Item = (&'a str, String)>,
) -> Vec<String> {
    let mut args = vec![
        format!("--unit={unit}"),
        "--description=deployd switch-to-configuration".into(),
        "--collect".into(),
        "--service-type=exec".into(),
        "--no-ask-password".into(),
        format!(
            "--property=StandardOutput=append:{}",
            launch.log_file.display()
        ),
        format!(
            "--property=StandardError=append:{}",
            launch.log_file.display()
        ),
    ];
    args.extend(
        environment
            .into_iter()
            .map(|(name, value)| format!("--setenv={name}={value}")),
    );
    args.push("/bin/sh".into());
    args.extend(
        wrapper_argv(launch)
            .iter()
            .map(|arg| escape_exec_start(arg)),
    );
    args
}

/// An argument as systemd must be given it in a unit's command line:
/// systemd substitutes `$NAME` and turns `$$` into `$` when it starts the
/// unit (`systemd.service(5)`, "Command lines"), so every `$` is doubled.
/// Unescaped, the wrapper's `echo $$` (its pid) wrote a lone `$`, and a
/// switch that ran past the start grace was taken for one that never
/// started.
fn escape_exec_start(arg: &str) -> String {
    arg.replace('$', "$$")
}

/// Waits for a switch to end, streaming its output into the deploy's log.
/// Stops it when it runs past the switch timeout.
pub async fn wait(daemon: &Daemon, id: &DeployId, launch: &SwitchLaunch) -> SwitchOutcome {
    wait_woken(daemon, id, launch, FALLBACK).await
}

/// [`wait`], looking at the switch when one of its files changes, or when
/// `fallback` passed without a change.
async fn wait_woken(
    daemon: &Daemon,
    id: &DeployId,
    launch: &SwitchLaunch,
    fallback: Duration,
) -> SwitchOutcome {
    // Watching before the first look: a change in between still wakes it.
    let files = [&launch.log_file, &launch.status_file, &launch.pid_file];
    let mut watch = watch::SwitchFilesWatch::new(&files.map(|file| file.as_path()), fallback);
    let started = tokio::time::Instant::now();
    let timeout = daemon.config().switch_timeout();
    // Launched in another boot: whatever its pid names now is not it.
    let rebooted = launch
        .boot_id
        .as_ref()
        .is_some_and(|launched| crate::system::boot_id().as_ref() != Some(launched));
    // Streamed from where an earlier daemon got to: no line twice.
    let streamed = streamed_file(launch);
    let mut offset = read_line(&streamed)
        .and_then(|line| line.parse().ok())
        .unwrap_or(0);
    loop {
        let before = offset;
        offset = stream_new_output(daemon, id, &launch.log_file, offset);
        if offset != before {
            let _ = std::fs::write(&streamed, format!("{offset}\n"));
        }
        if let Some(outcome) = read_status(&launch.status_file) {
            stream_new_output(daemon, id, &launch.log_file, offset);
            return outcome;
        }
        if rebooted {
            return SwitchOutcome::Failed(
                "the machine restarted during switch-to-configuration, which never reported its end"
                    .into(),
            );
        }
        match read_pid(&launch.pid_file) {
            None if started.elapsed() > START_GRACE => return SwitchOutcome::NeverStarted,
            Some(pid) if !process_runs(pid) => {
                // It may have written its status just before we looked.
                return read_status(&launch.status_file).unwrap_or_else(|| {
                    SwitchOutcome::Failed(
                        "switch-to-configuration ended without reporting its exit status".into(),
                    )
                });
            }
            _ => {}
        }
        if started.elapsed() > timeout {
            stop(daemon, id, launch).await;
            discard_unit_lists(daemon, id);
            return SwitchOutcome::Failed(format!(
                "switch-to-configuration did not finish within {timeout:?} and was stopped"
            ));
        }
        watch.changed().await;
    }
}

/// Stops a switch and everything it started, and waits until it is gone.
async fn stop(daemon: &Daemon, id: &DeployId, launch: &SwitchLaunch) {
    let invocation = match (&launch.unit, read_pid(&launch.pid_file)) {
        (Some(unit), _) => Invocation::new(
            &daemon.config().file.activation.systemctl,
            ["stop", unit.as_str()],
            Duration::from_secs(60),
        ),
        // The wrapper leads its own process group: kill the group, and only
        // a group the pid leads (never a reused pid's, never pid 1's).
        (None, Some(pid)) if pid > 1 && leads_its_group(pid) => Invocation::new(
            "kill",
            ["-KILL", "--", &format!("-{pid}")],
            Duration::from_secs(10),
        ),
        (None, _) => return,
    };
    if let Err(error) = command::run(&invocation, |line| daemon.log(id, line)).await {
        daemon.log(id, &format!("deployd: stopping the switch failed: {error}"));
    }
    for _ in 0..100 {
        if !read_pid(&launch.pid_file).is_some_and(process_runs) {
            return;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// The lists in which switch-to-configuration writes the units it is about
/// to start, restart and reload (and the activation script, those it asks to
/// be restarted or reloaded), so that the next switch finishes what an
/// interrupted one began (nixpkgs
/// `pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs`,
/// `START_LIST_FILE` and the others).
const UNIT_LISTS: [&str; 5] = [
    "start-list",
    "restart-list",
    "reload-list",
    "activation-restart-list",
    "activation-reload-list",
];

/// After a switch was stopped: removes the lists it left, which name the
/// units of the system it was switching to, so that the switch back does
/// not replay them (starting units the previous system does not have).
fn discard_unit_lists(daemon: &Daemon, id: &DeployId) {
    let config = daemon.config();
    let Some(dir) = config.file.activation.switch_lock.parent() else {
        return;
    };
    for name in UNIT_LISTS {
        let list = dir.join(name);
        if std::fs::remove_file(&list).is_ok() {
            daemon.log(
                id,
                &format!(
                    "deployd: removed {}, left by the stopped switch",
                    list.display()
                ),
            );
        }
    }
}

fn read_status(path: &Path) -> Option<SwitchOutcome> {
    let code: u8 = read_line(path)?.parse().ok()?;
    Some(match SwitchStatus::from_code(code) {
        SwitchStatus::Switched => SwitchOutcome::Succeeded,
        status => SwitchOutcome::Exited(status),
    })
}

/// Whether a switch's output says its pre-switch checks refused it.
pub fn refused_by_checks(launch: &SwitchLaunch) -> bool {
    printed(launch, PRE_SWITCH_CHECKS_FAILED)
}

/// Whether a switch's output says its activation script failed: the
/// switch then goes on, and exits 4 rather than 2 when units failed too.
pub fn activation_failed(launch: &SwitchLaunch) -> bool {
    printed(launch, ACTIVATION_FAILED)
}

/// Whether a switch printed `line` (alone on a line).
fn printed(launch: &SwitchLaunch, line: &str) -> bool {
    std::fs::read_to_string(&launch.log_file)
        .is_ok_and(|output| output.lines().any(|printed| printed.trim() == line))
}

fn read_pid(path: &Path) -> Option<u32> {
    read_line(path)?.parse().ok()
}

/// The one line of a file the wrapper wrote, once it is whole.
fn read_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.strip_suffix('\n')?;
    (!line.is_empty() && !line.contains('\n')).then(|| line.to_owned())
}

/// Whether `pid` leads its process group (as the wrapper does).
fn leads_its_group(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // After the command's `) `: state, ppid, pgrp.
        let group = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.split(' ').nth(2));
        group == Some(pid.to_string().as_str())
    })
}

/// Whether `pid` is a live process (not a zombie).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        state.is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Where the offset of the switch's output already streamed into the
/// deploy's log is kept (`switch-<n>.streamed`), for a restarted daemon.
fn streamed_file(launch: &SwitchLaunch) -> std::path::PathBuf {
    launch.log_file.with_extension("streamed")
}

/// Copies the lines added to `log_file` since `offset` into the deploy's log;
/// returns the new offset (at a line end).
fn stream_new_output(daemon: &Daemon, id: &DeployId, log_file: &Path, offset: u64) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(log_file) else {
        return offset;
    };
    let mut new = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut new).is_err() {
        return offset;
    }
    let Some(last_newline) = new.iter().rposition(|b| *b == b'\n') else {
        return offset;
    };
    for line in String::from_utf8_lossy(&new[..last_newline]).lines() {
        daemon.log(id, line);
    }
    offset + last_newline as u64 + 1
}

#[cfg(test)]
mod tests;
