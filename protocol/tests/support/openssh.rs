//! Real OpenSSH for the interop tests: its tools found on `PATH` (required
//! when `CI=true`, skipped with a note otherwise), run so that a failure
//! names the argv, the exit status and stderr, an `ssh-agent` that is
//! stopped by its pid when dropped, even when a test fails, and the
//! armor `ssh-keygen -Y` puts around an SSHSIG.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The OpenSSH tools the interop tests run.
const TOOLS: [&str; 3] = ["ssh-keygen", "ssh-agent", "ssh-add"];

/// Whether OpenSSH's tools are on `PATH`. Under CI (`CI=true`) a missing
/// tool fails the test; elsewhere the test is skipped with a note.
pub fn openssh_present(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("-?")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{} not on PATH (install openssh-client)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {what}, and CI=true requires it");
    }
    eprintln!("{test}: skipped, {what}");
    false
}

/// An OpenSSH command that ignores the caller's own agent.
pub fn openssh(tool: &str) -> Command {
    let mut command = Command::new(tool);
    command.env_remove("SSH_AUTH_SOCK");
    command
}

/// Runs `command` with `stdin`, whatever its outcome.
pub fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .unwrap_or_else(|error| panic!("{command:?}: writing stdin: {error}"));
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"))
}

/// Runs `command` (no input) and returns its stdout; panics with argv,
/// status and stderr when it fails.
pub fn run_ok(command: &mut Command) -> String {
    let output = run(command, b"");
    assert!(
        output.status.success(),
        "{command:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An `ssh-agent -D` (foreground, this test's child), stopped on drop.
pub struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    /// Starts an agent listening in `dir`; waits for its socket.
    pub fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = openssh("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent -D");
        // The guard exists from here on: a panic below still stops it.
        let agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent opened no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// `tool` talking to this agent.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = openssh(tool);
        command.env("SSH_AUTH_SOCK", &self.socket);
        command
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Only this agent: the child started above, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// An SSHSIG blob as `ssh-keygen -Y sign` writes it: armored, its base64
/// wrapped at 70 columns.
pub fn armor(blob: &[u8]) -> String {
    let text = STANDARD.encode(blob);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(70)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!("{BEGIN}\n{}\n{END}\n", lines.join("\n"))
}

/// The SSHSIG blob inside `ssh-keygen -Y sign`'s armor.
pub fn dearmor(text: &str) -> Vec<u8> {
    let body = text
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|rest| rest.strip_suffix(END))
        .unwrap_or_else(|| panic!("not an armored SSH signature: {text}"));
    let base64: String = body.split_whitespace().collect();
    STANDARD.decode(base64).expect("armored base64")
}
