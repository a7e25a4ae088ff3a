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
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::capabilities::{CHROMEDRIVER, CHROMIUM};
use super::processes::{group_has_running_process, running_processes_naming};

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
    /// The browser's directory (profile, HOME, log): every process of the
    /// browser names it on its command line.
    scratch: PathBuf,
}

impl Driver {
    /// Starts chromedriver, with its HOME and its log (`chromedriver.log`)
    /// in `scratch`, and waits (bounded) until it listens on loopback.
    pub(super) fn start(scratch: &Path) -> Result<Driver> {
        check_installed(&[CHROMIUM, CHROMEDRIVER])?;
        let port = free_loopback_port()?;
        let log = &scratch.join("chromedriver.log");
        let output = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let home = scratch.join("home");
        std::fs::create_dir(&home).with_context(|| format!("creating {}", home.display()))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Chromium's own output too, into the same log.
            .arg("--enable-chrome-logs")
            // Chromium writes under HOME (crash reports, dconf): a home of
            // its own keeps the user's untouched and goes with the browser.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
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
            scratch: scratch.to_owned(),
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
    /// (bounded) until no process of the group is left running, nor any
    /// process naming the browser's directory: Chromium's crash handler
    /// leaves the group and ends by itself once Chromium is gone; one
    /// still there after [`EXIT_TIMEOUT`] is killed by its pid.
    fn stop(&mut self) -> Result<()> {
        let group = Pid::from_child(&self.child);
        // ESRCH: the group is already empty.
        let _ = kill_process_group(group, Signal::KILL);
        self.child.wait().context("reaping chromedriver")?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while group_has_running_process(self.pid())
            || !running_processes_naming(&self.scratch).is_empty()
        {
            if Instant::now() >= deadline {
                return self.kill_stragglers();
            }
            thread::sleep(POLL);
        }
        Ok(())
    }

    fn kill_stragglers(&self) -> Result<()> {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let stragglers = running_processes_naming(&self.scratch);
        for pid in &stragglers {
            if let Some(pid) = Pid::from_raw(*pid as i32) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        bail!(
            "the browser's processes outlived chromedriver by {EXIT_TIMEOUT:?} \
             (killed by pid: {stragglers:?}; group {} running: {})",
            self.pid(),
            group_has_running_process(self.pid())
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("browser: stopping chromedriver: {error:#}");
        }
    }
}

/// Fails, naming the script that installs them, when Debian's Chromium or
/// chromedriver is missing. Never a skip: under `CI=true` as anywhere else.
fn check_installed(programs: &[&str]) -> Result<()> {
    for program in programs {
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
    let start = length.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    // Whole lines only: drop the one the cut fell in.
    let text = match text.find('\n') {
        Some(end) if start > 0 => &text[end + 1..],
        _ => &text,
    };
    format!("chromedriver's and Chromium's log ends with:\n{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_an_error_naming_the_install_script() {
        let error = check_installed(&["/bin/sh", "/nonexistent/chromedriver"])
            .expect_err("a missing program");
        let message = error.to_string();
        assert!(
            message.starts_with("/nonexistent/chromedriver is missing"),
            "{message}"
        );
        assert!(message.contains("scripts/install-deps"), "{message}");
        assert!(check_installed(&["/bin/sh"]).is_ok());
    }
}
