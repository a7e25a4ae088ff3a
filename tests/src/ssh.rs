//! A real SSH server (Debian's openssh-server) on the builder, so `push
//! --build-host` can build there over `ssh-ng://`, as users build on their
//! build machines. Keys and config live in the lab's directory; sessions see
//! the builder's own store and a home of the builder's own.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lab::{wait_for_port, Lab};
use crate::run::run;

/// How `push` (or `nix`) reaches the builder over SSH.
#[derive(Debug, Clone)]
pub struct SshAccess {
    /// `root@ADDRESS`.
    pub destination: String,
    /// Options for `NIX_SSHOPTS`: the client key, no known-hosts file.
    pub nix_sshopts: String,
}

impl Lab {
    /// Starts sshd on the builder (supervised) and returns how to reach it.
    pub fn start_builder_ssh(&mut self) -> Result<SshAccess> {
        let dir = self.dir().join("ssh");
        std::fs::create_dir_all(&dir)?;
        for key in ["host", "client"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "deployd-lab", "-f"])
                .arg(dir.join(key)))
            .with_context(|| format!("making the {key} key"))?;
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))?;
        let builder = self.builder().clone();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}\nPort 22\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
                 SetEnv HOME=/var/lib/home XDG_CACHE_HOME=/var/lib/home/.cache\n",
                address = builder.address,
                host = dir.join("host").display(),
                keys = dir.join("authorized_keys").display(),
            ),
        )?;
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
        let client: PathBuf = dir.join("client");
        Ok(SshAccess {
            destination: format!("root@{}", builder.address),
            nix_sshopts: format!(
                "-i {} -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR",
                client.display()
            ),
        })
    }
}
