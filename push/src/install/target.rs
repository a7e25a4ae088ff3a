//! The new machine, as `push install` reaches it: over SSH, booted from an
//! installer, its root file system mounted at ROOT. The destination and
//! ROOT check themselves; every value put in a script sent there is quoted
//! for the shell as well. The checks are one read-only script, one round
//! trip, so that nothing is written there before every check passed.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deployd_command::{self as command, Captured, CommandError, Invocation};
use deployd_protocol::StorePath;

use crate::nix;

/// How long the checks may take (connecting included).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `nixos-install` may take once the closure is there (it only
/// sets the profile and installs the boot loader).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long connecting may take, so that an unreachable machine is told
/// by ssh itself, well before the time limit of the command.
const CONNECT_TIMEOUT: &str = "ConnectTimeout=20";
/// Lines of a failed command's output quoted in its error.
const QUOTED_LINES: usize = 3;
/// What the check script prefixes its findings with.
const CHECK_MARK: &str = "deployd-check: ";

/// An SSH destination (`user@host`, or `host`): nothing ssh would read as
/// an option, and nothing that would change the meaning of the store URL
/// it goes into (`ssh://DEST?remote-store=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDestination(String);

impl FromStr for SshDestination {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        nix::check_build_host(text)?;
        if text.contains(['?', '#', '&', '/', '\'', '"', '\\']) {
            return Err(format!("{text:?} is not an SSH destination (user@host)"));
        }
        Ok(SshDestination(text.to_owned()))
    }
}

impl SshDestination {
    /// The destination as ssh takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The machine's address, without the user.
    pub fn address(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(_, host)| host)
    }
}

impl fmt::Display for SshDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the new machine's root file system is mounted on the installer:
/// an absolute path of letters, digits and `/._-+@,:` only, so that it is
/// the same word in a shell script, a store URL and an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRoot(String);

impl FromStr for InstallRoot {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+@,:".contains(c);
        if !text.starts_with('/') || !text.chars().all(plain) {
            return Err(format!(
                "{text:?} is not a usable root: give an absolute path of letters, digits and / . _ - + @ , : (no spaces, quotes or control characters)"
            ));
        }
        Ok(InstallRoot(text.to_owned()))
    }
}

impl InstallRoot {
    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstallRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` as one word for a POSIX shell, whatever it holds.
pub fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs `script` on `destination`.
pub fn on_target(destination: &SshDestination, script: &str, timeout: Duration) -> Invocation {
    nix::ssh(
        destination.as_str(),
        &["-o", CONNECT_TIMEOUT],
        script,
        timeout,
    )
}

/// The read-only checks: root, ROOT a mount point, the installer's
/// programs. Each problem is one `deployd-check: ...` line; the last line
/// is `deployd-check: done`. `mountpoint` is util-linux's, on every
/// installer; without it, ROOT is a mount point when it is on another
/// device than its parent.
pub fn check_script(root: &InstallRoot) -> String {
    format!(
        r#"root={root}
say() {{ echo "{CHECK_MARK}$1"; }}
[ "$(id -u)" = 0 ] || say not-root
if [ ! -d "$root" ]; then say no-root
elif command -v mountpoint >/dev/null 2>&1; then mountpoint -q "$root" || say not-mounted
else [ "$(stat -c %d "$root")" != "$(stat -c %d "$root/..")" ] || say not-mounted
fi
for program in nixos-install nix-store; do
  command -v "$program" >/dev/null 2>&1 || say "missing $program"
done
say done"#,
        root = quoted(root.as_str())
    )
}

/// What the checks found wrong, as one line; `Ok` when nothing.
pub fn read_checks(
    output: &str,
    destination: &SshDestination,
    root: &InstallRoot,
) -> Result<(), String> {
    let address = destination.address();
    let findings: Vec<&str> = output
        .lines()
        .filter_map(|line| line.strip_prefix(CHECK_MARK))
        .collect();
    if findings.last() != Some(&"done") {
        let last = output.lines().last().unwrap_or("nothing");
        return Err(format!(
            "{destination} did not run the checks (its shell is not a POSIX shell?): {last}"
        ));
    }
    let problems: Vec<String> = findings[..findings.len() - 1]
        .iter()
        .map(|finding| match *finding {
            "not-root" => format!(
                "nixos-install must run as root on {address}: give --target root@{address}"
            ),
            "no-root" => format!(
                "{root} does not exist on {address}: mount the new machine's root file system there first"
            ),
            "not-mounted" => format!(
                "{root} on {address} is not a mount point: mount the new machine's root file system there first (installing into an unmounted {root} would fill the installer's memory and leave the disk empty)"
            ),
            other => match other.strip_prefix("missing ") {
                Some(program) => format!(
                    "{address} has no {program}: boot it from a NixOS installer"
                ),
                None => format!("{address} answered the checks with {other:?}"),
            },
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `nixos-install` of the system already in ROOT's store: no root
/// password (the system's own users and keys decide who logs in), no
/// channel (the fleet's flake is the source).
pub fn install_script(system: &StorePath, root: &InstallRoot) -> String {
    format!(
        "nixos-install --system {} --root {} --no-root-passwd --no-channel-copy",
        quoted(system.as_str()),
        quoted(root.as_str())
    )
}

/// A command on the target that failed, with its last lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.summary())]
pub struct RemoteFailure {
    /// The last lines it printed (stdout and stderr, ssh's own included).
    pub last_lines: Vec<String>,
    /// How it failed.
    #[source]
    pub cause: CommandError,
}

impl RemoteFailure {
    /// Its last lines on one line, or how it failed when it printed none.
    pub fn summary(&self) -> String {
        let printed: Vec<&str> = self
            .last_lines
            .iter()
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .collect();
        match (&self.cause, printed.is_empty()) {
            (CommandError::Timeout { timeout, .. }, _) => {
                format!("no end within {} s", timeout.as_secs())
            }
            (CommandError::Spawn { cause, .. }, _) => format!("cannot start ssh: {cause}"),
            (CommandError::Failed { status, .. }, true) => format!("{status}, printing nothing"),
            (CommandError::Failed { status, .. }, false) => {
                format!("{status}: {}", printed.join(" | "))
            }
            (_, true) => "it printed nothing".into(),
            (_, false) => printed.join(" | "),
        }
    }

    /// The last line alone (ssh's own complaint, when it could not connect).
    pub fn last_line(&self) -> String {
        let last = self
            .last_lines
            .iter()
            .rev()
            .map(|line| line.trim())
            .find(|line| !line.is_empty());
        match (&self.cause, last) {
            (CommandError::Failed { .. }, Some(line)) => line.to_owned(),
            _ => self.summary(),
        }
    }
}

/// Runs `invocation`, handing each line to `on_line` and keeping the last
/// few for the error.
pub async fn run_keeping_tail(
    invocation: &Invocation,
    mut on_line: impl FnMut(&str),
) -> Result<Captured, RemoteFailure> {
    let mut tail: VecDeque<String> = VecDeque::with_capacity(QUOTED_LINES + 1);
    let result = command::run(invocation, |line| {
        on_line(line);
        if !line.trim().is_empty() {
            if tail.len() == QUOTED_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    })
    .await;
    result.map_err(|cause| RemoteFailure {
        last_lines: tail.into_iter().collect(),
        cause,
    })
}

/// Fails the test unless `sh` parses `script` (a quoting slip shows here,
/// not on the new machine).
#[cfg(test)]
pub fn assert_parses(script: &str) {
    let parsed = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .expect("sh runs");
    assert!(
        parsed.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> SshDestination {
        "root@fresh.lan".parse().expect("destination")
    }

    fn root() -> InstallRoot {
        "/mnt".parse().expect("root")
    }

    #[test]
    fn roots_and_destinations_check_themselves() {
        for good in ["/mnt", "/mnt/target-1", "/", "/a.b_c-d+e@f,g:h"] {
            assert!(good.parse::<InstallRoot>().is_ok(), "{good}");
        }
        for bad in [
            "mnt", "", "/m nt", "/mnt'", "/mnt\"", "/mnt\n", "/$(x)", "/a;b", "/a?b",
        ] {
            assert!(bad.parse::<InstallRoot>().is_err(), "{bad:?}");
        }
        for bad in [
            "-oProxyCommand=x",
            "root@a b",
            "",
            "root@a?x",
            "root@a/b",
            "a'b",
        ] {
            assert!(bad.parse::<SshDestination>().is_err(), "{bad:?}");
        }
        assert_eq!(destination().address(), "fresh.lan");
        let bare: SshDestination = "fd00::7".parse().expect("bare");
        assert_eq!(bare.address(), "fd00::7");
    }

    #[test]
    fn anything_is_one_shell_word() {
        assert_eq!(quoted("/mnt"), "'/mnt'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted("$(reboot)"), "'$(reboot)'");
    }

    #[test]
    fn the_checks_are_read_only_and_quoted() {
        let script = check_script(&root());
        assert_parses(&script);
        assert!(script.starts_with("root='/mnt'\n"), "{script}");
        assert!(script.contains("mountpoint -q \"$root\""));
        assert!(script.ends_with("say done"));
        for writer in [">", "mkdir", "rm ", "touch", "mount "] {
            let writes = script
                .lines()
                .any(|line| line.contains(writer) && !line.contains(">/dev/null"));
            assert!(!writes, "{writer} in {script}");
        }
    }

    #[test]
    fn findings_become_one_line() {
        let (destination, root) = (destination(), root());
        assert_eq!(
            read_checks("deployd-check: done\n", &destination, &root),
            Ok(())
        );
        let error = read_checks(
            "motd\ndeployd-check: not-mounted\ndeployd-check: missing nixos-install\ndeployd-check: done\n",
            &destination,
            &root,
        )
        .expect_err("problems");
        assert!(
            error.starts_with("/mnt on fresh.lan is not a mount point: mount the new machine's root file system there first"),
            "{error}"
        );
        assert!(
            error.contains("; fresh.lan has no nixos-install"),
            "{error}"
        );
        assert!(!error.contains('\n'));
        let error = read_checks("fish: Unknown command\n", &destination, &root).expect_err("no");
        assert!(error.contains("fish: Unknown command"), "{error}");
    }

    #[test]
    fn the_install_command() {
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh"
            .parse()
            .expect("path");
        assert_parses(&install_script(&system, &root()));
        assert_eq!(
            install_script(&system, &root()),
            "nixos-install --system '/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh' --root '/mnt' --no-root-passwd --no-channel-copy"
        );
        let invocation = on_target(&destination(), "true", CHECK_TIMEOUT);
        let argv: Vec<String> = invocation
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        // NIX_SSHOPTS may add options in front; the end is fixed.
        assert_eq!(
            argv[argv.len() - 7..],
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=20",
                "root@fresh.lan",
                "--",
                "true"
            ]
        );
    }
}
