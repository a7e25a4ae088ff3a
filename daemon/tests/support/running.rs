//! The real `deployd` as a child process: started on a config, its address
//! read from its log, its stderr lines collected, SIGHUP on demand, and
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The real daemon, stopped on drop, with its stderr lines collected.
pub struct Running {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub address: String,
    /// What it logged after it began to listen.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `deployd --config CONFIG` and waits until it listens.
    pub fn start(config: &Path) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deployd"))
            .arg("--config")
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start deployd");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let address = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).expect("read") > 0,
                "deployd exited before listening"
            );
            if let Some((_, address)) = line.trim().split_once("listening on ") {
                break address.to_owned();
            }
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                collected.lock().expect("lines").push(line);
            }
        });
        Running {
            child,
            address,
            lines,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGHUP (`systemctl reload deployd`).
    pub fn hang_up(&self) {
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to 20 s for a logged line containing every one of `parts`.
    pub fn wait_for_log(&self, parts: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .any(|line| parts.iter().all(|part| line.contains(part)));
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}: {:?}",
                self.lines.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
