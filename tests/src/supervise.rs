//! Supervision of a node's long-running programs, as systemd's
//! `Restart=always` would do it: `lab supervise` runs a command, appends its
//! output to a log, writes its pid to a file, and starts it again whenever it
//! exits. The supervisor runs inside the node's network namespace, so tearing
//! the node down kills it and its child together.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// Pause before a restart, as systemd's `RestartSec`.
pub const RESTART_DELAY: Duration = Duration::from_millis(300);

/// Options of `lab supervise`.
#[derive(Debug, clap::Args)]
pub struct SuperviseOptions {
    /// File the program's stdout and stderr are appended to.
    #[arg(long)]
    pub log: PathBuf,
    /// File that holds the running program's pid.
    #[arg(long)]
    pub pid_file: PathBuf,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the program for ever, restarting it when it exits.
pub fn supervise(options: &SuperviseOptions) -> Result<()> {
    let (program, args) = options
        .command
        .split_first()
        .context("nothing to supervise")?;
    for start in 1u64.. {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log)
            .with_context(|| format!("opening {}", options.log.display()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        std::fs::write(&options.pid_file, child.id().to_string())?;
        let status = child.wait()?;
        let mut log = OpenOptions::new().append(true).open(&options.log)?;
        use std::io::Write;
        writeln!(
            log,
            "lab supervise: start {start} of {program} ended with {status}; restarting"
        )?;
        thread::sleep(RESTART_DELAY);
    }
    Ok(())
}
