//! Debian's chromedriver as a child of the test: started on a free loopback
//! port in a process group of its own (Chromium and its helpers join that
//! group), its output and Chromium's kept in a log file rather than in the
//! test's output, and stopped by killing that group by its id.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process_group, Pid, Signal};

use super::capabilities::{CHROMEDRIVER, CHROMIUM};

/// How long chromedriver may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the processes of a killed group may take to be gone.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(25);
/// How much of the log an error quotes.
const LOG_TAIL_BYTES: u64 = 3000;

/// A running chromedriver, stopped (with its whole process group) on drop.
#[derive(Debug)]
pub(super) struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    /// Starts chromedriver with its output in `log` and waits (bounded) until
    /// it listens on loopback.
    pub(super) fn start(log: &Path) -> Result<Driver> {
        check_installed()?;
        let port = free_loopback_port()?;
        let output = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("sharing the driver's log")?)
            .stderr(output)
            // Its own group, which Chromium's processes join: one kill by the
            // group's id ends them all, whatever their names.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let mut driver = Driver {
            child,
            port,
            log: log.to_owned(),
        };
        driver.wait_until_listening()?;
        Ok(driver)
    }

    /// The WebDriver endpoint's URL.
    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// chromedriver's pid, which is also its process group's id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of chromedriver's and Chromium's output, for errors.
    pub(super) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for chromedriver")? {
                bail!(
                    "chromedriver exited with {status} before it listened on port {}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&address, POLL).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "chromedriver did not listen on port {} within {LISTEN_TIMEOUT:?}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Kills the process group by its id, reaps chromedriver, and waits
    /// (bounded) until no process of the group is left running.
    fn stop(&mut self) -> Result<()> {
        let group = Pid::from_child(&self.child);
        // ESRCH: the group is already empty.
        let _ = kill_process_group(group, Signal::KILL);
        self.child.wait().context("reaping chromedriver")?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while group_has_running_process(self.pid()) {
            if Instant::now() >= deadline {
                bail!(
                    "processes of chromedriver's group {} still run {EXIT_TIMEOUT:?} after SIGKILL",
                    self.pid()
                );
            }
            thread::sleep(POLL);
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("browser: stopping chromedriver: {error:#}");
        }
    }
}

/// Whether a process of group `group` is still running (a zombie, dead and
/// waiting for its parent to reap it, does not count).
pub fn group_has_running_process(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| state_and_group(&stat))
            .is_some_and(|(state, pgrp)| pgrp == group && state != 'Z' && state != 'X')
    })
}

/// A process's state and process group from `/proc/PID/stat`: after the
/// command name (in parentheses, and which may hold anything), fields are
/// state, ppid, pgrp.
fn state_and_group(stat: &str) -> Option<(char, u32)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Fails, naming the script that installs them, when Debian's Chromium or
/// chromedriver is missing. Never a skip: under `CI=true` as anywhere else.
fn check_installed() -> Result<()> {
    for program in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(program).is_file() {
            let ci = if std::env::var("CI").as_deref() == Ok("true") {
                " (CI=true: browser tests never skip)"
            } else {
                ""
            };
            bail!(
                "{program} is missing: run scripts/install-deps, which installs Debian's \
                 chromium and chromium-driver{ci}"
            );
        }
    }
    Ok(())
}

/// A loopback port nothing listened on a moment ago.
fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(log: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(log) else {
        return format!("(no log at {})", log.display());
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    format!(
        "chromedriver's log ends with:\n{}",
        String::from_utf8_lossy(&bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_group_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (chrome (x) y) S 4200 4100 4100 0 -1 4194560";
        assert_eq!(state_and_group(stat), Some(('S', 4100)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn this_process_group_runs() {
        let group = rustix::process::getpgrp().as_raw_pid() as u32;
        assert!(group_has_running_process(group));
    }
}
