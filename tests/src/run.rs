//! The lab's one door to external commands: every `ip`, `nix`, `git` and
//! host command goes through [`run`], which bounds it in time and, on
//! failure, reports the argv, the exit status and the tail of stderr.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a lab command may run unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of stderr an error quotes.
const STDERR_TAIL_BYTES: usize = 2000;

/// Runs `command` to completion with [`DEFAULT_TIMEOUT`]; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<Output> {
    run_within(command, DEFAULT_TIMEOUT)
}

/// Runs `command`, killing it after `timeout`; fails unless it exits 0.
pub fn run_within(command: &mut Command, timeout: Duration) -> Result<Output> {
    let label = describe(command);
    run_labelled(command, &label, timeout)
}

/// Like [`run_within`], naming the command `label` in errors (for commands
/// wrapped in namespace plumbing that would hide what ran).
pub fn run_labelled(command: &mut Command, label: &str, timeout: Duration) -> Result<Output> {
    let output = output_within(command, timeout).with_context(|| format!("running {label}"))?;
    if !output.status.success() {
        bail!(
            "{label} failed with {}: {}",
            output.status,
            stderr_tail(&output)
        );
    }
    Ok(output)
}

/// Runs `command` with a timeout and returns its output whatever its status.
pub fn output_within(command: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a command")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} timed out after {timeout:?}", describe(command));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The command line, for error messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// The last part of a command's stderr, as text.
pub fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = text.trim();
    match text.char_indices().rev().nth(STDERR_TAIL_BYTES) {
        Some((start, _)) => format!("...{}", &text[start..]),
        None => text.to_owned(),
    }
}

/// Standard output as trimmed text.
pub fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_status_and_stderr() {
        let error =
            run(Command::new("/bin/sh").args(["-c", "echo oops >&2; exit 3"])).expect_err("exit 3");
        let message = format!("{error:#}");
        assert!(message.contains("/bin/sh -c"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("oops"), "{message}");
    }

    #[test]
    fn a_hanging_command_is_killed() {
        let started = Instant::now();
        let error = run_within(
            Command::new("/bin/sleep").arg("30"),
            Duration::from_millis(200),
        )
        .expect_err("timeout");
        assert!(format!("{error:#}").contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
