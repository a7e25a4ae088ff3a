//! Real SSH servers (Debian's openssh-server) in the lab: on the builder, so
//! `push --build-host` can build there over `ssh-ng://`, as users build on
//! their build machines; and on hosts, so a deploy can go the way colmena
//! and `nixos-rebuild --target-host` go (`nix-copy-closure --to root@HOST`,
//! then the switch over SSH), for the benchmark. Every server takes the same
//! client key, made once per lab. A session sees its node's own store,
//! `/run` and `/var/lib`, and a home of the node's own.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::lab::{wait_for_port, Lab};
use crate::node::Node;
use crate::run::run;

/// Where a host keeps its sshd's config and keys, seen on the host.
const HOST_SSH_DIR: &str = "/var/lib/lab-ssh";
/// The transient unit sshd runs as on a host that runs systemd.
const HOST_SSHD_UNIT: &str = "lab-sshd";

/// How `push` (or `nix`, or `ssh`) reaches a node over SSH.
#[derive(Debug, Clone)]
pub struct SshAccess {
    /// `root@ADDRESS`.
    pub destination: String,
    /// Options for `NIX_SSHOPTS`: the client key, no known-hosts file.
    pub nix_sshopts: String,
}

impl SshAccess {
    fn new(address: Ipv4Addr, client_key: &Path) -> SshAccess {
        SshAccess {
            destination: format!("root@{address}"),
            nix_sshopts: format!(
                "-i {} -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR",
                client_key.display()
            ),
        }
    }

    /// The arguments of `ssh` that run `script` there (the options of
    /// `NIX_SSHOPTS`, then the destination and the script).
    pub fn ssh_args(&self, script: &str) -> Vec<String> {
        let mut args: Vec<String> = self
            .nix_sshopts
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        args.extend([self.destination.clone(), script.to_owned()]);
        args
    }
}

/// sshd's config: listening on `address` only, root by key only, keys and
/// authorized keys in `dir` (as the server sees it).
fn sshd_config(address: Ipv4Addr, dir: &Path) -> String {
    format!(
        "ListenAddress {address}\nPort 22\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
         SetEnv HOME=/var/lib/home XDG_CACHE_HOME=/var/lib/home/.cache\n",
        host = dir.join("host").display(),
        keys = dir.join("authorized_keys").display(),
    )
}

impl Lab {
    /// The lab's SSH keys (a host key every server uses, a client key every
    /// server accepts), made on first use; returns their directory.
    fn ssh_keys(&self) -> Result<PathBuf> {
        let dir = self.dir().join("ssh");
        if dir.join("authorized_keys").exists() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&dir)?;
        for key in ["host", "client"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "deployd-lab", "-f"])
                .arg(dir.join(key)))
            .with_context(|| format!("making the {key} key"))?;
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))?;
        Ok(dir)
    }

    /// Starts sshd on the builder (supervised) and returns how to reach it.
    pub fn start_builder_ssh(&mut self) -> Result<SshAccess> {
        let dir = self.ssh_keys()?;
        let builder = self.builder().clone();
        let config = dir.join("sshd_config");
        std::fs::write(&config, sshd_config(builder.address, &dir))?;
        // sshd's privilege separation directory, in the builder's own /run.
        std::fs::create_dir_all(builder.outside("/run/sshd"))?;
        let argv: Vec<OsString> = builder.mounted_argv(
            "/usr/sbin/sshd",
            [
                OsString::from("-D"),
                "-e".into(),
                "-f".into(),
                config.into_os_string(),
            ],
        );
        self.supervise(&builder, "sshd", argv)?;
        wait_for_port((builder.address, 22).into(), Duration::from_secs(10))?;
        Ok(SshAccess::new(builder.address, &dir.join("client")))
    }

    /// Starts sshd on `host`, inside the host (so that a session's
    /// `nix-store --serve --write` and switch see the host's own store,
    /// profiles and systemd), and returns how to reach it: as a transient
    /// unit of the host's systemd (`Restart=always`), or supervised on a
    /// host without systemd. Its config and keys are copied into the host's
    /// own `/var/lib/lab-ssh`.
    pub fn start_host_ssh(&mut self, host: &Node) -> Result<SshAccess> {
        let keys = self.ssh_keys()?;
        let inside = Path::new(HOST_SSH_DIR);
        let dir = host.outside(HOST_SSH_DIR);
        std::fs::create_dir_all(&dir)?;
        for file in ["host", "authorized_keys"] {
            std::fs::copy(keys.join(file), dir.join(file))?;
        }
        std::fs::write(dir.join("sshd_config"), sshd_config(host.address, inside))?;
        std::fs::create_dir_all(host.outside("/run/sshd"))?;
        let sshd: [OsString; 4] = [
            "-D".into(),
            "-e".into(),
            "-f".into(),
            inside.join("sshd_config").into_os_string(),
        ];
        if host.pid1.is_some() {
            let mut argv: Vec<OsString> = vec![
                format!("--unit={HOST_SSHD_UNIT}").into(),
                "--property=Restart=always".into(),
                "/usr/sbin/sshd".into(),
            ];
            argv.extend(sshd);
            let output = host
                .command("systemd-run", argv)
                .output()
                .with_context(|| format!("systemd-run on {}", host.name))?;
            if !output.status.success() {
                bail!(
                    "starting sshd on {} failed: {}",
                    host.name,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        } else {
            let argv = host.mounted_argv("/usr/sbin/sshd", sshd);
            self.supervise(host, "sshd", argv)?;
        }
        wait_for_port((host.address, 22).into(), Duration::from_secs(10))
            .with_context(|| format!("sshd on {} did not come up", host.name))?;
        Ok(SshAccess::new(host.address, &keys.join("client")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_runs_a_script_with_the_nix_options() {
        let access = SshAccess::new(Ipv4Addr::new(198, 18, 7, 10), Path::new("/lab/ssh/client"));
        let args = access.ssh_args("nix-env --version");
        assert_eq!(&args[..2], ["-i", "/lab/ssh/client"]);
        assert_eq!(
            &args[args.len() - 2..],
            ["root@198.18.7.10", "nix-env --version"]
        );
        assert_eq!(args.len() - 2, access.nix_sshopts.split(' ').count());
    }
}
