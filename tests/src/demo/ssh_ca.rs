//! The demo's SSH act: the fleet trusts an SSH CA, not a list of keys. The
//! CA (made by `ssh-keygen`) certifies an operator's key for principal
//! `deployer` for 20 hours; a real `ssh-agent` holds key and certificate;
//! `push --key CERT` signs the whole rollout once through the agent (what a
//! security key would ask one touch for), and every host checks the
//! certificate against the CA it trusts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use deployd_lab::Lab;

use super::expect::{Expected, PushRun};
use deployd_lab::run::run;
use deployd_lab::ssh_agent::SshAgent;

/// The fleet's CA and the operator's key, in the lab's directory.
pub struct FleetCa {
    dir: PathBuf,
}

impl FleetCa {
    /// Makes the CA and the operator's key (`ssh-keygen`).
    pub fn new(lab: &Lab) -> Result<FleetCa> {
        let dir = lab.dir().join("ssh-ca");
        std::fs::create_dir_all(&dir)?;
        for (name, comment) in [("fleet-ca", "fleet-ca"), ("alice", "alice@laptop")] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.join(name)))?;
        }
        Ok(FleetCa { dir })
    }

    /// What a host's config says to trust the CA's certificates for
    /// `deployer` or `deployer@HOST`, to deploy and read.
    pub fn trusted_by(&self, host: &str) -> Result<String> {
        let ca = std::fs::read_to_string(self.dir.join("fleet-ca.pub"))?;
        Ok(format!(
            "\n[[trusted_keys]]\nssh_ca = \"{}\"\nprincipals = [\"deployer\", \"deployer@{host}\"]\nmay = [\"deploy\", \"read\"]\n",
            ca.trim()
        ))
    }

    /// The act: certify, add to the agent, push the whole fleet with one
    /// signature; checks every host and the agent's count.
    pub fn show(&self, lab: &mut Lab, hosts: &[String], operator: (&Path, &Path)) -> Result<()> {
        let (key_file, state) = operator;
        println!("\n== an SSH CA the hosts trust certifies alice's key for principal deployer, 20 hours; ssh-agent holds it");
        run(Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(self.dir.join("fleet-ca"))
            .args(["-I", "alice", "-n", "deployer", "-V", "-5m:+20h"])
            .arg(self.dir.join("alice.pub")))?;
        let agent = SshAgent::start(&self.dir)?;
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(self.dir.join("alice"))
            .env("SSH_AUTH_SOCK", agent.socket()))?;
        let rev = lab.flake_mut().commit_changed_system()?;
        lab.save()?;
        let certificate = self.dir.join("alice-cert.pub");
        println!(
            "\n== push --all {} --key alice-cert.pub  (signed once through ssh-agent for every host)",
            &rev[..12]
        );
        let certificate = certificate.to_str().context("a UTF-8 path")?;
        let socket = agent.socket().to_str().context("a UTF-8 path")?;
        let before = agent.sign_requests();
        let pushed = PushRun::run_with_env(
            lab,
            (key_file, state),
            &["--all", &rev, "--key", certificate],
            &[("SSH_AUTH_SOCK", socket)],
        )?;
        Expected::every_host_succeeds(hosts, &rev)
            .check(&pushed, lab, key_file, state)
            .context("the push signed with the certificate did not deploy every host")?;
        let signatures = agent.sign_requests() - before;
        if signatures != 1 {
            bail!("ssh-agent signed {signatures} times for one rollout, not once");
        }
        println!(
            "== as planned: push exited 0, every host runs {}, and ssh-agent signed once for {} hosts",
            &rev[..12],
            hosts.len()
        );
        Ok(())
    }
}
