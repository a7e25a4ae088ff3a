//! Running the real `deployd` on a lab host: its config (trusting the keys a
//! test gives it and the lab's cache), as `deployd.service` where the host
//! runs systemd or else under `lab supervise` (which restarts it as
//! `Restart=always` would), and its address.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::lab::{wait_for_port, Lab};
use crate::node::Node;
use crate::systemd_host::deployd_main_pid;

/// The port deployd listens on in the lab.
pub const DEPLOYD_PORT: u16 = 9797;
/// Where a host's deployd config is, seen on the host.
pub const DEPLOYD_CONFIG: &str = "/var/lib/deployd.toml";
/// deployd's state directory on a host.
pub const DEPLOYD_STATE_DIR: &str = "/var/lib/deployd";

/// A deploy key a host trusts, and what it may do (`None`: everything).
#[derive(Debug, Clone)]
pub struct TrustedDeployKey {
    /// `NAME:base64` of the public key.
    pub public_key: String,
    /// The `may` list.
    pub may: Option<Vec<String>>,
}

impl Lab {
    /// Writes `host`'s deployd config: its name, the keys it trusts, the
    /// lab's cache as its only substituter, and `extra` TOML at the end.
    pub fn write_deployd_config(
        &self,
        host: &Node,
        trusted: &[TrustedDeployKey],
        extra: &str,
    ) -> Result<()> {
        let mut text = format!(
            "listen = \"0.0.0.0:{DEPLOYD_PORT}\"\nhostname = \"{}\"\nstate_dir = \"{DEPLOYD_STATE_DIR}\"\n",
            host.name
        );
        for key in trusted {
            text.push_str(&format!(
                "\n[[trusted_keys]]\nkey = \"{}\"\n",
                key.public_key
            ));
            if let Some(may) = &key.may {
                let quoted: Vec<String> = may.iter().map(|p| format!("\"{p}\"")).collect();
                text.push_str(&format!("may = [{}]\n", quoted.join(", ")));
            }
        }
        text.push_str(&format!(
            "\n[nix]\nsubstituters = [\"{}\"]\ntrusted_public_keys = [\"{}\"]\n",
            self.cache_url(),
            self.cache_public_key()?
        ));
        text.push_str(extra);
        std::fs::write(host.outside(DEPLOYD_CONFIG), text)?;
        Ok(())
    }

    /// Starts deployd on `host` and waits until it answers on its port: as
    /// `deployd.service` where the host runs systemd (restarted, if it ran,
    /// so that it reads its config anew), else under `lab supervise`.
    pub fn start_deployd(&mut self, host: &Node) -> Result<()> {
        if host.pid1.is_some() {
            return self.restart_deployd_unit(host);
        }
        let binary = self.deployd_binary()?;
        let argv = host.mounted_argv(&binary, ["--config", DEPLOYD_CONFIG]);
        self.supervise(host, "deployd", argv)?;
        wait_for_port((host.address, DEPLOYD_PORT).into(), Duration::from_secs(20)).with_context(
            || {
                format!(
                    "deployd on {} did not come up; see {}",
                    host.name,
                    host.root.join("deployd.log").display()
                )
            },
        )
    }

    /// Makes `host`'s deployd config (written by
    /// [`Lab::write_deployd_config`]) listen on the host's loopback only
    /// (`127.0.0.1`): a host nobody can reach, started with
    /// [`Lab::start_unreachable_deployd`].
    pub fn listen_inside_only(&self, host: &Node) -> Result<()> {
        let file = host.outside(DEPLOYD_CONFIG);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let everywhere = format!("listen = \"0.0.0.0:{DEPLOYD_PORT}\"");
        if !text.contains(&everywhere) {
            bail!("{} has no line {everywhere}", file.display());
        }
        let inside = text.replace(
            &everywhere,
            &format!("listen = \"127.0.0.1:{DEPLOYD_PORT}\""),
        );
        std::fs::write(&file, inside).with_context(|| format!("writing {}", file.display()))
    }

    /// Starts deployd on `host` whose config listens on the host's loopback
    /// only (`127.0.0.1`): a host nobody can reach, which pulls its orders.
    /// Waits until it answers inside the host, and fails if it answers
    /// outside it.
    pub fn start_unreachable_deployd(&mut self, host: &Node) -> Result<()> {
        if host.pid1.is_some() {
            let output = host
                .command("systemctl", ["restart", "deployd.service"])
                .output()?;
            if !output.status.success() {
                bail!(
                    "systemctl restart deployd.service on {}: {}",
                    host.name,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        } else {
            let binary = self.deployd_binary()?;
            let argv = host.mounted_argv(&binary, ["--config", DEPLOYD_CONFIG]);
            self.supervise(host, "deployd", argv)?;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.ask_deployd_inside(host, "/healthz").is_err() {
            if std::time::Instant::now() > deadline {
                bail!(
                    "deployd on {} did not come up; see {}",
                    host.name,
                    host.root.join("deployd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let outside = SocketAddr::from((host.address, DEPLOYD_PORT));
        if TcpStream::connect_timeout(&outside, Duration::from_secs(2)).is_ok() {
            bail!(
                "deployd on {} is reachable from outside the host",
                host.name
            );
        }
        Ok(())
    }

    /// GETs `path` of deployd's API from inside `host` (`curl` on its
    /// loopback); the answer's body, when it is a 2xx.
    pub fn ask_deployd_inside(&self, host: &Node, path: &str) -> Result<String> {
        let url = format!("http://127.0.0.1:{DEPLOYD_PORT}{path}");
        let output = host.run(&["curl", "-sf", "--max-time", "10", &url])?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops deployd on `host` for good (`systemctl stop`, or its
    /// supervisor and then it).
    pub fn stop_deployd(&mut self, host: &Node) -> Result<()> {
        if host.pid1.is_none() {
            return self.stop_supervised(host, "deployd");
        }
        let output = host
            .command("systemctl", ["stop", "deployd.service"])
            .output()?;
        if !output.status.success() {
            bail!(
                "systemctl stop deployd.service on {}: {}",
                host.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// deployd's pid on `host`, as processes on the host see it, while it
    /// runs.
    pub fn deployd_pid(&self, host: &Node) -> Option<u32> {
        match host.pid1 {
            Some(_) => deployd_main_pid(host),
            None => self.supervised_pid(host, "deployd"),
        }
    }

    /// Sends `signal` (`KILL`, `STOP`, ...) to deployd's main process on
    /// `host`, and nothing else: a switch it started lives on.
    pub fn signal_deployd(&self, host: &Node, signal: &str) -> Result<()> {
        let pid = self
            .deployd_pid(host)
            .with_context(|| format!("deployd does not run on {}", host.name))?;
        let status = host
            .command("kill", [format!("-{signal}"), pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} on {} failed", host.name);
        }
        Ok(())
    }

    /// The base URL of `host`'s deployd.
    pub fn deployd_url(&self, host: &Node) -> String {
        format!("http://{}:{DEPLOYD_PORT}", host.address)
    }

    /// Writes `push.toml` at the flake's root (not committed: the work tree
    /// is dirty, which builds must ignore): every host at its address, the
    /// builder's cache as `copy_to`, signed with the cache key; `extra` TOML
    /// goes into `[defaults]`.
    pub fn write_push_inventory(&self, extra: &str) -> Result<()> {
        let mut text = format!(
            "[defaults]\nport = {DEPLOYD_PORT}\ncopy_to = \"file://{}\"\nsign_key_file = \"{}\"\n{extra}\n",
            self.cache_dir().display(),
            self.cache_secret_key_file().display(),
        );
        for host in self.hosts() {
            text.push_str(&format!(
                "\n[hosts.{}]\naddress = \"{}\"\n",
                host.name, host.address
            ));
        }
        std::fs::write(self.flake().dir().join("push.toml"), text)?;
        Ok(())
    }

    /// A `push` command run from the operator's side (this namespace) in the
    /// flake's directory, signing with `key_file`, keeping its GC roots under
    /// `state_home`, with no substituter on the operator's machine.
    pub fn push_command(&self, key_file: &Path, state_home: &Path) -> Result<Command> {
        let mut command = Command::new(sibling_binary(self.lab_binary(), "push")?);
        command
            .current_dir(self.flake().dir())
            .env("DEPLOYD_KEY_FILE", key_file)
            .env("XDG_STATE_HOME", state_home)
            .env("NIX_CONFIG", "substituters =");
        Ok(command)
    }

    /// The `deployd` binary: beside the `lab` binary, as cargo builds them.
    pub fn deployd_binary(&self) -> Result<PathBuf> {
        sibling_binary(self.lab_binary(), "deployd")
    }
}

/// The binary `name` in the same directory as `lab_binary`.
pub fn sibling_binary(lab_binary: &Path, name: &str) -> Result<PathBuf> {
    let path = lab_binary
        .parent()
        .context("the lab binary has no directory")?
        .join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    Ok(path)
}
