//! Running `switch-to-configuration` so that it outlives deployd: a switch
//! that restarts deployd itself must still complete, and its outcome must
//! still be known. With systemd it runs in a transient unit
//! (`systemd-run`); without, as a detached process in its own session.
//! Either way a small wrapper writes its exit status to a file when it ends,
//! and the daemon (this one, or the next after a restart) waits for that
//! file while it streams the switch's output into the deploy's log.

use std::path::Path;
use std::time::Duration;

use deployd_protocol::{Action, DeployId};

use crate::command::{self, CommandError, Invocation};
use crate::daemon::Daemon;
use crate::state::SwitchLaunch;

/// Writes the script's exit status atomically once it ends.
/// `$1` script, `$2` action, `$3` status file.
const WRAPPER: &str = r#""$1" "$2"; echo $? > "$3.tmp" && mv "$3.tmp" "$3""#;

/// How often a running switch is looked at.
const POLL: Duration = Duration::from_millis(100);

/// How a switch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// Exit status 0.
    Succeeded,
    /// Another exit status, or it vanished, or it ran out of time.
    Failed(String),
}

/// The argv of a detached switch: the wrapper around the system's script.
pub fn wrapper_argv(system: &str, action: Action, status_file: &Path) -> Vec<String> {
    vec![
        "-c".into(),
        WRAPPER.into(),
        "deployd-switch".into(),
        format!("{system}/bin/switch-to-configuration"),
        action.as_str().into(),
        status_file.to_string_lossy().into_owned(),
    ]
}

/// The transient unit a switch runs in, under systemd.
pub fn unit_name(id: &DeployId, n: u32) -> String {
    format!("deployd-switch-{id}-{n}")
}

/// Starts the `n`th switch of deploy `id`: `system`'s script with `action`.
pub async fn launch(
    daemon: &Daemon,
    id: &DeployId,
    n: u32,
    (system, action): (&str, Action),
) -> Result<SwitchLaunch, CommandError> {
    let (log_file, status_file) = daemon.switch_files(id, n);
    let _ = std::fs::remove_file(&status_file);
    let wrapper = wrapper_argv(system, action, &status_file);
    let activation = &daemon.config.file.activation;
    let (pid, unit) = if daemon.systemd {
        let unit = unit_name(id, n);
        let mut args = vec![
            format!("--unit={unit}"),
            "--description=deployd switch-to-configuration".into(),
            "--collect".into(),
            format!("--property=StandardOutput=append:{}", log_file.display()),
            format!("--property=StandardError=append:{}", log_file.display()),
            "/bin/sh".into(),
        ];
        args.extend(wrapper);
        let invocation = Invocation::new(&activation.systemd_run, args, Duration::from_secs(30));
        command::run(&invocation, |line| daemon.log(id, line)).await?;
        (None, Some(unit))
    } else {
        let invocation = Invocation::new("/bin/sh", wrapper, daemon.config.switch_timeout());
        (Some(command::spawn_detached(&invocation, &log_file)?), None)
    };
    Ok(SwitchLaunch {
        system: system.to_owned(),
        action,
        pid,
        unit,
        log_file,
        status_file,
    })
}

/// Waits for a launched switch to end, streaming its output into the
/// deploy's log from `from_byte` on. Gives up after the switch timeout.
pub async fn wait(daemon: &Daemon, id: &DeployId, launch: &SwitchLaunch) -> SwitchOutcome {
    let deadline = tokio::time::Instant::now() + daemon.config.switch_timeout();
    let mut offset = 0;
    loop {
        offset = stream_new_output(daemon, id, &launch.log_file, offset);
        if let Some(outcome) = read_status(&launch.status_file) {
            stream_new_output(daemon, id, &launch.log_file, offset);
            return outcome;
        }
        if !still_running(daemon, launch).await {
            // It may have written its status just before we looked.
            if let Some(outcome) = read_status(&launch.status_file) {
                return outcome;
            }
            return SwitchOutcome::Failed(
                "switch-to-configuration ended without reporting its exit status".into(),
            );
        }
        if tokio::time::Instant::now() >= deadline {
            return SwitchOutcome::Failed(format!(
                "switch-to-configuration did not finish within {:?}",
                daemon.config.switch_timeout()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn read_status(path: &Path) -> Option<SwitchOutcome> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(match text.trim() {
        "0" => SwitchOutcome::Succeeded,
        code => SwitchOutcome::Failed(format!("switch-to-configuration exited with status {code}")),
    })
}

async fn still_running(daemon: &Daemon, launch: &SwitchLaunch) -> bool {
    if let Some(pid) = launch.pid {
        return process_runs(pid);
    }
    let Some(unit) = &launch.unit else {
        return false;
    };
    let invocation = Invocation::new(
        &daemon.config.file.activation.systemctl,
        ["is-active", "--quiet", unit.as_str()],
        Duration::from_secs(10),
    );
    command::run(&invocation, |_| {}).await.is_ok()
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

/// Copies the lines added to `log_file` since `offset` into the deploy's log;
/// returns the new offset (at a line end).
fn stream_new_output(daemon: &Daemon, id: &DeployId, log_file: &Path, offset: u64) -> u64 {
    let Ok(bytes) = std::fs::read(log_file) else {
        return offset;
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let new = &bytes[start..];
    let Some(last_newline) = new.iter().rposition(|b| *b == b'\n') else {
        return offset;
    };
    for line in String::from_utf8_lossy(&new[..last_newline]).lines() {
        daemon.log(id, line);
    }
    offset + last_newline as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_runs_the_script_and_records_its_status() {
        let argv = wrapper_argv(
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x",
            Action::Switch,
            Path::new("/var/lib/deployd/deploys/d.switch-1.status"),
        );
        assert_eq!(argv[0], "-c");
        assert_eq!(
            argv[3..],
            [
                "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x/bin/switch-to-configuration",
                "switch",
                "/var/lib/deployd/deploys/d.switch-1.status"
            ]
        );
        assert_eq!(
            unit_name(&"d-1".parse().expect("id"), 2),
            "deployd-switch-d-1-2"
        );
    }

    #[test]
    fn the_wrapper_reports_exit_statuses() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (script, expected) in [
            ("exit 0", SwitchOutcome::Succeeded),
            (
                "exit 3",
                SwitchOutcome::Failed("switch-to-configuration exited with status 3".into()),
            ),
        ] {
            let system = dir.path().join("system");
            std::fs::create_dir_all(system.join("bin")).expect("dir");
            let script_path = system.join("bin/switch-to-configuration");
            std::fs::write(&script_path, format!("#!/bin/sh\n{script}\n")).expect("write");
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&script_path)
                .status()
                .expect("chmod");
            let status = dir.path().join("status");
            let _ = std::fs::remove_file(&status);
            let argv = wrapper_argv(&system.to_string_lossy(), Action::Switch, &status);
            let ran = std::process::Command::new("/bin/sh")
                .args(&argv)
                .status()
                .expect("sh");
            assert!(ran.success());
            assert_eq!(read_status(&status), Some(expected));
        }
    }
}
