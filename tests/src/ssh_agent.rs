//! A real `ssh-agent`, the caller's child, in debug mode (`-d`): it stays in
//! the foreground and logs every request, so the signatures asked of it can
//! be counted. Stopped by its pid on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running `ssh-agent -d`.
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SshAgent {
    /// Starts an agent whose socket and log are in `dir`.
    pub fn start(dir: &Path) -> Result<SshAgent> {
        let socket = dir.join("agent.sock");
        let log = dir.join("agent.log");
        let child = Command::new("ssh-agent")
            .arg("-d")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting ssh-agent (openssh-client)")?;
        let agent = SshAgent { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if Instant::now() > deadline {
                bail!("ssh-agent did not open {}", agent.socket.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    /// Its socket, for `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How many signatures it was asked for so far.
    pub fn sign_requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("process_sign_request2: entering"))
            .count()
    }
}
