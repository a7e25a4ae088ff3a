//! The one door to external programs. Every `nix-store`, `nix-env`,
//! `systemd-run` and `switch-to-configuration` call goes through here: null
//! stdin, killed when dropped or when its time is up, output streamed line by
//! line to the caller (a deploy's log; bytes that are not UTF-8 replaced,
//! lines and the captured stdout bounded), and an error that names the argv,
//! the exit status or signal and the tail of the output. What it shows (the
//! command line, the lines handed on, the error) has the credentials of any
//! URL in it masked ([`redact`]); the argv itself is passed on whole.

pub mod redact;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Lines of output an error quotes.
const TAIL_LINES: usize = 15;
/// The longest line handed on: a longer one is cut there, its rest dropped.
const MAX_LINE_BYTES: usize = 8 * 1024;
/// The most of standard output kept (`Captured::stdout`); the rest is still
/// read and streamed, not kept.
const MAX_CAPTURED_BYTES: usize = 4 * 1024 * 1024;

/// A program to run: argv and time limit, built by pure functions elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// How long it may run.
    pub timeout: Duration,
}

impl Invocation {
    /// `program args...`, with `timeout`.
    pub fn new<I, S>(program: impl AsRef<Path>, args: I, timeout: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Invocation {
            program: program.as_ref().to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            timeout,
        }
    }

    /// The program and its arguments, as text.
    pub fn words(&self) -> Vec<String> {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(
                self.args
                    .iter()
                    .map(|arg| arg.to_string_lossy().into_owned()),
            )
            .collect()
    }

    /// The command line, for logs and errors, with the credentials of any
    /// URL in it masked.
    pub fn display(&self) -> String {
        redact::mask_credentials(&self.words().join(" ")).into_owned()
    }
}

/// How a program failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started. (The cause is in the message, which
    /// callers print alone, and so is not also a `source`.)
    #[error("cannot start `{command}`: {cause}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        cause: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{command}` failed ({status}): {tail}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status or signal.
        status: ExitStatus,
        /// The last lines of its output.
        tail: String,
    },
    /// It ran out of time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// Reading its output or waiting for it failed.
    #[error("lost track of `{command}`: {cause}")]
    Wait {
        /// The command line.
        command: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// What a successful run printed.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// Standard output, whole.
    pub stdout: String,
}

/// Runs `invocation`, handing every output line (stdout and stderr) to
/// `on_line`, credentials masked (as in the error's tail); fails unless it
/// exits 0 in time. The captured stdout is the program's own, unmasked: it
/// is data for the caller, not text to show.
pub async fn run(
    invocation: &Invocation,
    mut on_line: impl FnMut(&str),
) -> Result<Captured, CommandError> {
    let command = invocation.display();
    let mut child = Command::new(&invocation.program)
        .args(&invocation.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|cause| CommandError::Spawn {
            command: command.clone(),
            cause,
        })?;
    let (lines_tx, mut lines_rx) = mpsc::channel::<(bool, String)>(64);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_lines(stdout, true, lines_tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_lines(stderr, false, lines_tx));
    }
    let mut stdout = String::new();
    let mut tail: VecDeque<String> = VecDeque::new();
    let collect = async {
        while let Some((is_stdout, line)) = lines_rx.recv().await {
            if is_stdout && stdout.len() + line.len() < MAX_CAPTURED_BYTES {
                stdout.push_str(&line);
                stdout.push('\n');
            }
            let shown = redact::mask_credentials(&line).into_owned();
            on_line(&shown);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(shown);
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(invocation.timeout, collect).await {
        Err(_) => {
            return Err(CommandError::Timeout {
                command,
                timeout: invocation.timeout,
            })
        }
        Ok(Err(cause)) => return Err(CommandError::Wait { command, cause }),
        Ok(Ok(status)) => status,
    };
    if !status.success() {
        let tail = Vec::from(tail).join("\n");
        return Err(CommandError::Failed {
            command,
            status,
            tail,
        });
    }
    Ok(Captured { stdout })
}

/// Hands on every line of `pipe`, decoded lossily and cut at
/// `MAX_LINE_BYTES`, and reads the pipe to its end (a program is never
/// killed by SIGPIPE for what it printed).
async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    is_stdout: bool,
    lines: mpsc::Sender<(bool, String)>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(true) = read_bounded_line(&mut reader, &mut line).await {
        let text = String::from_utf8_lossy(&line).into_owned();
        if lines.send((is_stdout, text)).await.is_err() {
            break;
        }
    }
}

/// Reads one line (without its newline) into `line`, keeping at most
/// `MAX_LINE_BYTES` of it. `false` at the end of the input.
async fn read_bounded_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let newline = buffer.iter().position(|&byte| byte == b'\n');
        let content = &buffer[..newline.unwrap_or(buffer.len())];
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&content[..content.len().min(room)]);
        let used = newline.map_or(buffer.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

/// Starts `invocation` so that it outlives this process: its own session,
/// output appended to `log`, no time limit here (the caller watches it).
/// Returns its pid.
pub fn spawn_detached(invocation: &Invocation, log: &Path) -> Result<u32, CommandError> {
    let command = invocation.display();
    let spawn_error = |cause| CommandError::Spawn {
        command: command.clone(),
        cause,
    };
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(spawn_error)?;
    let errors = output.try_clone().map_err(spawn_error)?;
    let mut std_command = std::process::Command::new(&invocation.program);
    std_command
        .args(&invocation.args)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors);
    std::os::unix::process::CommandExt::process_group(&mut std_command, 0);
    let mut child = std_command.spawn().map_err(spawn_error)?;
    let pid = child.id();
    // Reap it if it ends while we run; after a restart nobody needs to. Without
    // a thread to reap it, it stays a zombie until the daemon exits: harmless.
    let _ = std::thread::Builder::new()
        .name("reap-switch".into())
        .spawn(move || child.wait());
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Invocation {
        Invocation::new("/bin/sh", ["-c", script], timeout)
    }

    #[tokio::test]
    async fn lines_stream_and_stdout_is_captured() {
        let mut lines = Vec::new();
        let captured = run(
            &sh("echo out; echo err >&2; echo more", Duration::from_secs(5)),
            |line| lines.push(line.to_owned()),
        )
        .await
        .expect("runs");
        assert_eq!(captured.stdout, "out\nmore\n");
        lines.sort();
        assert_eq!(lines, ["err", "more", "out"]);
    }

    #[tokio::test]
    async fn failure_names_command_status_and_tail() {
        let error = run(&sh("echo why >&2; exit 4", Duration::from_secs(5)), |_| {})
            .await
            .expect_err("exit 4");
        let message = error.to_string();
        assert!(message.contains("/bin/sh -c echo why"), "{message}");
        assert!(message.contains("exit status: 4"), "{message}");
        assert!(message.ends_with("why"), "{message}");
    }

    #[tokio::test]
    async fn credentials_are_masked_in_the_command_line_lines_and_error() {
        let script = "echo \"unable to download 'http://alice:s3cret@cache/x'\" >&2; exit 1";
        let invocation = Invocation::new(
            "/bin/sh",
            ["-c", script, "http://alice:s3cret@cache"],
            Duration::from_secs(5),
        );
        assert!(
            invocation
                .display()
                .ends_with("exit 1 http://alice:***@cache"),
            "{}",
            invocation.display()
        );
        // The program gets its arguments whole.
        assert_eq!(invocation.words()[3], "http://alice:s3cret@cache");
        let mut lines = Vec::new();
        let error = run(&invocation, |line| lines.push(line.to_owned()))
            .await
            .expect_err("exit 1");
        assert_eq!(lines, ["unable to download 'http://alice:***@cache/x'"]);
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.ends_with("unable to download 'http://alice:***@cache/x'"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn captured_stdout_is_the_programs_own() {
        let captured = run(
            &sh("echo http://alice:s3cret@cache", Duration::from_secs(5)),
            |line| assert_eq!(line, "http://alice:***@cache"),
        )
        .await
        .expect("runs");
        assert_eq!(captured.stdout, "http://alice:s3cret@cache\n");
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed() {
        let started = std::time::Instant::now();
        let error = run(&sh("sleep 30", Duration::from_millis(200)), |_| {})
            .await
            .expect_err("timeout");
        assert!(matches!(error, CommandError::Timeout { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_byte_that_is_not_utf8_is_replaced_and_the_output_goes_on() {
        let mut lines = Vec::new();
        let captured = run(
            &sh(r"printf 'a\377b\n'; echo after", Duration::from_secs(5)),
            |line| lines.push(line.to_owned()),
        )
        .await
        .expect("exits 0: its pipe stays read");
        assert_eq!(lines, ["a\u{FFFD}b", "after"]);
        assert_eq!(captured.stdout, "a\u{FFFD}b\nafter\n");
    }

    #[tokio::test]
    async fn a_long_line_is_cut_and_the_next_one_still_comes() {
        let mut lines = Vec::new();
        let script = "head -c 100000 /dev/zero | tr '\\0' x; echo; echo next";
        run(&sh(script, Duration::from_secs(5)), |line| {
            lines.push(line.to_owned())
        })
        .await
        .expect("runs");
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
    }

    #[tokio::test]
    async fn captured_output_is_bounded() {
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' x | fold -w 100",
            MAX_CAPTURED_BYTES * 2
        );
        let captured = run(&sh(&script, Duration::from_secs(30)), |_| {})
            .await
            .expect("runs");
        assert!(captured.stdout.len() <= MAX_CAPTURED_BYTES);
        assert!(captured.stdout.len() > MAX_CAPTURED_BYTES / 2);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let error = run(
            &Invocation::new("/nonexistent/program", ["x"], Duration::from_secs(1)),
            |_| {},
        )
        .await
        .expect_err("missing");
        assert!(matches!(error, CommandError::Spawn { .. }));
        // The cause is in the message: callers print it with `{}`.
        assert!(
            error.to_string().contains("No such file or directory"),
            "{error}"
        );
    }
}
