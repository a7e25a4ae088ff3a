//! `push serve` in the lab as it runs on NixOS: it evaluates and builds the
//! fleet's flake as a build user of its own, who can read none of its
//! secret files, through a Nix daemon. Here the build user is a uid and gid
//! without a name ([`BUILD_ID`]: setpriv and Nix take numbers), and the
//! daemon is one of the lab's own on this machine's store, on a socket of
//! its own: root (the service) uses the store directly, the build user
//! goes through the daemon, as on NixOS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The uid and gid of push serve's build user in the lab.
pub const BUILD_ID: u32 = 64_123;

/// The service's state directory laid out for its build user, and the Nix
/// daemon the build user builds through, killed (and waited for) on drop.
pub struct BuildUserSetup {
    daemon: Child,
    socket: PathBuf,
}

impl BuildUserSetup {
    /// Makes `state_dir` readable by the build user's group (its clone; the
    /// directories above it must let that group through) and the build
    /// user's home in it, `state_dir/build`, its own; starts a Nix daemon
    /// with its socket and log in `state_dir`.
    pub fn start(state_dir: &Path) -> Result<BuildUserSetup> {
        std::fs::create_dir_all(state_dir.join("build"))
            .with_context(|| format!("creating {}", state_dir.display()))?;
        own(state_dir, 0, BUILD_ID, 0o750)?;
        own(&state_dir.join("build"), BUILD_ID, BUILD_ID, 0o700)?;
        let socket = state_dir.join("nix-daemon.socket");
        let log = std::fs::File::create(state_dir.join("nix-daemon.log"))?;
        let daemon = Command::new("nix-daemon")
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .env("NIX_CONFIG", "substituters =")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nix-daemon")?;
        let setup = BuildUserSetup { daemon, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !setup.socket.exists() {
            if Instant::now() > deadline {
                bail!("nix-daemon made no socket at {}", setup.socket.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(setup)
    }

    /// `[build]` of push serve's config: copy to `copy_to`, signing with
    /// `sign_key_file`, evaluating and building as the build user.
    pub fn build_section(copy_to: &str, sign_key_file: &Path) -> String {
        format!(
            "[build]\ncopy_to = \"{copy_to}\"\nsign_key_file = \"{}\"\nuser = \"{BUILD_ID}\"\ngroup = \"{BUILD_ID}\"\n",
            sign_key_file.display()
        )
    }

    /// What push serve's environment needs: the daemon's socket, for its
    /// build user's Nix.
    pub fn environment(&self) -> (&'static str, &Path) {
        ("NIX_DAEMON_SOCKET_PATH", &self.socket)
    }
}

impl Drop for BuildUserSetup {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Makes `path` owned by `uid:gid` with `mode`.
pub fn own(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Makes the secret file `path` readable by root alone, as agenix makes a
/// secret its owner's alone.
pub fn make_secret(path: &Path) -> Result<()> {
    own(path, 0, 0, 0o600)
}
