//! Running the real `push` against a lab: an inventory of the lab's hosts,
//! a deploy key the hosts trust, the builder's cache as `copy_to` (signed
//! with the cache key), and a GC root directory of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deployd_lab::{Lab, Node};

use super::deployd::{key, trusted};

/// A lab whose hosts run deployd, and what `push` needs to reach them.
pub struct PushLab {
    /// The lab.
    pub lab: Lab,
    /// The deploy key file (secret) the hosts trust.
    pub key_file: PathBuf,
    /// Its public key (`NAME:base64`).
    pub public_key: String,
    /// `XDG_STATE_HOME` for push (its GC roots).
    pub state_home: tempfile::TempDir,
}

impl PushLab {
    /// A lab of `hosts` hosts, deployd running on each, an inventory written.
    pub fn up(hosts: usize) -> PushLab {
        PushLab::with_config(hosts, "")
    }

    /// Like [`PushLab::up`], with `extra` TOML at the top of every deployd config.
    pub fn with_config(hosts: usize, extra: &str) -> PushLab {
        PushLab::configured(hosts, extra, |_| String::new())
    }

    /// Like [`PushLab::up`], each host also trusting what `trust(host)`
    /// says (`[[trusted_keys]]` tables, at the end of its config).
    pub fn trusting(hosts: usize, trust: impl Fn(&Node) -> String) -> PushLab {
        PushLab::configured(hosts, "", trust)
    }

    fn configured(hosts: usize, extra: &str, trust: impl Fn(&Node) -> String) -> PushLab {
        let mut lab = Lab::up(&super::lab_options(hosts)).expect("lab up");
        let ops = key("ops-1");
        for host in lab.hosts().to_vec() {
            lab.write_deployd_config(&host, &[trusted(&ops, None)], &trust(&host))
                .expect("config");
            if !extra.is_empty() {
                let path = host.outside(deployd_lab::DEPLOYD_CONFIG);
                let text = std::fs::read_to_string(&path).expect("config");
                std::fs::write(&path, format!("{extra}\n{text}")).expect("config");
            }
            lab.start_deployd(&host).expect("deployd up");
        }
        let key_file = lab.dir().join("keys/ops-1.secret");
        std::fs::write(&key_file, ops.to_key_file_text().as_bytes()).expect("key file");
        lab.write_push_inventory("").expect("inventory");
        PushLab {
            lab,
            key_file,
            public_key: ops.public_key().to_string(),
            state_home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Runs `push ARGS` in the flake's directory; returns its output.
    pub fn push(&self, args: &[&str]) -> Output {
        self.push_with(args, &[])
    }

    /// Runs `push ARGS` with extra environment variables.
    pub fn push_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self
            .lab
            .push_command(&self.key_file, self.state_home.path())
            .expect("push binary");
        command.envs(env.iter().copied()).args(args);
        command.output().expect("run push")
    }

    /// Starts `push ARGS` in the background, its output piped.
    pub fn spawn_push(&self, args: &[&str]) -> std::process::Child {
        self.spawn_push_with(args, &[])
    }

    /// Starts `push ARGS` with extra environment variables in the
    /// background, its output piped.
    pub fn spawn_push_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut command = self
            .lab
            .push_command(&self.key_file, self.state_home.path())
            .expect("push binary");
        command
            .envs(env.iter().copied())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("start push")
    }

    /// Where push keeps the GC root of `host`'s last built system.
    pub fn gc_root(&self, host: &str) -> PathBuf {
        self.state_home.path().join("deployd/gc-roots").join(host)
    }
}

/// The system the flake defines for `host` at `rev`, evaluated here.
pub fn system_at(flake_dir: &Path, rev: &str, host: &str) -> String {
    let installable = format!(
        "git+file://{}?rev={rev}#nixosConfigurations.{host}.config.system.build.toplevel.outPath",
        flake_dir.display()
    );
    let output = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--raw",
            &installable,
        ])
        .env("NIX_CONFIG", "substituters =")
        .output()
        .expect("nix eval");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Output as text, for assertions.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Credentials for moto (it accepts any), from the standard AWS variables.
pub const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "deployd-lab"),
    ("AWS_SECRET_ACCESS_KEY", "deployd-lab-secret"),
];

/// Sets `pull = true` for `host` in the flake's push.toml.
pub fn mark_pulling(flake_dir: &Path, host: &str) {
    let inventory = flake_dir.join("push.toml");
    let written = std::fs::read_to_string(&inventory).expect("push.toml");
    let pulling = written.replace(
        &format!("[hosts.{host}]\n"),
        &format!("[hosts.{host}]\npull = true\n"),
    );
    assert_ne!(pulling, written, "the host's entry was found");
    std::fs::write(&inventory, pulling).expect("push.toml");
}
