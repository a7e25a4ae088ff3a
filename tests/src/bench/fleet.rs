//! A lab made ready for the benchmark: hosts running deployd (and sshd, for
//! the SSH ways), a revision whose closures are of the size asked for, built
//! on the builder, in the cache and in push's store beforehand (by one
//! untimed push), and the cache then slowed as asked.
//!
//! Before every timed deploy each host is made fresh again: its `/nix`
//! (store, database, profiles, GC roots) is emptied from outside, as the lab
//! makes it for a new host, with its `/run/current-system`, its boot entry
//! and Nix's memory of the cache's answers; then checked empty. After every
//! deploy each host must run its system, hold it in its profile, and hold
//! every path of its closure.
//!
//! For the pull way, every host's deployd also polls a channel: a folder
//! under the cache's served directory, `push publish` writing into it.
//! push.toml marks the hosts `pull = true` for that way alone (push
//! refuses to call a host so marked). A host keeps its deployd state
//! (records, its channel's sequence) from deploy to deploy; every publish
//! raises the sequence, so a host made fresh applies the next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use deployd_lab::http::Pace;
use deployd_lab::run::{run, stderr_tail};
use deployd_lab::{BulkPaths, Lab, LabOptions, SshAccess, TrustedDeployKey};
use deployd_protocol::api::{DeployState, StatusResponse};
use deployd_protocol::SecretKey;

use super::closure_shape::{self, ClosureShape};
use super::ways::Way;

/// How long the untimed first push may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often the pull way looks whether every host has switched.
const SWITCH_CHECK_PERIOD: Duration = Duration::from_millis(100);
/// How long a host's deployd may take to end a deploy once it switched.
const DEPLOY_END_TIMEOUT: Duration = Duration::from_secs(120);
/// The channel's folder, under the cache's served directory.
const CHANNEL_FOLDER: &str = "channel";

/// What a figure deploys, and to how many hosts.
#[derive(Debug, Clone, Copy)]
pub struct FleetSpec {
    /// Hosts in the lab.
    pub hosts: usize,
    /// Extra store paths in every host's closure.
    pub paths: u32,
    /// Random bytes in each of them.
    pub bytes_per_path: u64,
    /// The levels they are arranged in, each path referencing two of the
    /// level below (1: a flat closure).
    pub levels: u32,
    /// How often the hosts poll their channel, in seconds (the pull way's
    /// `[pull] interval_s`).
    pub pull_interval_s: u64,
}

/// The closure of one host's system, as deployed.
#[derive(Debug, Clone, Copy)]
pub struct ClosureSize {
    /// Store paths in it.
    pub paths: usize,
    /// Their NAR size, all together.
    pub bytes: u64,
}

/// A lab ready for timed deploys.
pub struct BenchFleet {
    lab: Lab,
    rev: String,
    /// Each host's system at `rev`.
    systems: BTreeMap<String, String>,
    /// Each host's closure (its store paths).
    closures: BTreeMap<String, Vec<String>>,
    /// How the builder reaches each host over SSH (for the SSH ways).
    ssh: BTreeMap<String, SshAccess>,
    key_file: PathBuf,
    operator_state: PathBuf,
    /// The hosts' `[pull] interval_s`.
    pull_interval_s: u64,
}

impl BenchFleet {
    /// Makes the lab in `dir` and readies it. The lab is this process's: it
    /// goes down when the returned fleet (or, on error, the half-made one)
    /// is dropped, or with [`BenchFleet::down`].
    pub fn up(
        dir: &Path,
        lab_binary: PathBuf,
        spec: FleetSpec,
        ways: &[Way],
    ) -> Result<BenchFleet> {
        let options = LabOptions {
            hosts: spec.hosts,
            dir: Some(dir.to_owned()),
            lab_binary,
            owned_by_this_process: true,
            systemd: true,
        };
        let mut lab = Lab::up(&options)?;
        eprintln!(
            "bench: lab {} is up in {}",
            lab.state().slot.bridge(),
            lab.dir().display()
        );
        let key = SecretKey::generate("bench-1".parse()?).context("making the deploy key")?;
        let key_file = lab.dir().join("keys/bench-1.secret");
        std::fs::write(&key_file, key.to_key_file_text().as_bytes())?;
        let trusted = [TrustedDeployKey {
            public_key: key.public_key().to_string(),
            may: None,
        }];
        let pull = if ways.contains(&Way::Pull) {
            std::fs::create_dir_all(lab.cache_dir().join(CHANNEL_FOLDER))?;
            format!(
                "\n[pull]\nchannels = [\"{}/{CHANNEL_FOLDER}\"]\ninterval_s = {}\n",
                lab.cache_url(),
                spec.pull_interval_s
            )
        } else {
            String::new()
        };
        let mut ssh = BTreeMap::new();
        for host in lab.hosts().to_vec() {
            lab.write_deployd_config(&host, &trusted, &pull)?;
            lab.start_deployd(&host)?;
            if ways.iter().any(|way| way.needs_ssh()) {
                ssh.insert(host.name.clone(), lab.start_host_ssh(&host)?);
            }
        }
        lab.write_push_inventory("")?;
        let rev = lab.flake_mut().commit_large_closure(BulkPaths {
            paths: spec.paths,
            bytes_per_path: spec.bytes_per_path,
            levels: spec.levels,
        })?;
        lab.save()?;
        eprintln!("bench: building the systems on the builder and publishing them to the cache");
        let systems = lab.build_and_publish(&rev)?;
        let mut closures = BTreeMap::new();
        for (host, system) in &systems {
            let output = lab
                .builder()
                .run(&["nix-store", "--query", "--requisites", system])?;
            let paths = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            closures.insert(host.clone(), paths);
        }
        let operator_state = lab.dir().join("operator");
        let fleet = BenchFleet {
            lab,
            rev,
            systems,
            closures,
            ssh,
            key_file,
            operator_state,
            pull_interval_s: spec.pull_interval_s,
        };
        fleet.warm_up()?;
        Ok(fleet)
    }

    /// One untimed `push --all`: push builds the systems in its own store
    /// and finds them in the cache, so that each timed push's build is a
    /// no-op; every host's first switch (which starts its units) is done.
    fn warm_up(&self) -> Result<()> {
        eprintln!("bench: a first, untimed push --all (push builds in its own store)");
        // Not `run_within`: push's summary of every host is on its stdout.
        let output = deployd_lab::run::output_within(
            self.push_command()?.args(["--all", &self.rev]),
            WARM_UP_TIMEOUT,
        )?;
        ensure!(
            output.status.success(),
            "the untimed push failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr_tail(&output)
        );
        self.check_switched()
    }

    /// Writes push.toml as `way` needs it: every host `pull = true` for
    /// the pull way (push publish --all selects them), none for the others
    /// (push would refuse to call them).
    pub fn ready_inventory_for(&self, way: Way) -> Result<()> {
        self.lab.write_push_inventory("")?;
        if way == Way::Pull {
            let file = self.lab.flake().dir().join("push.toml");
            let mut text = std::fs::read_to_string(&file)?;
            for host in self.lab.hosts() {
                let entry = format!("[hosts.{}]\n", host.name);
                ensure!(text.contains(&entry), "push.toml lacks {entry}");
                text = text.replace(&entry, &format!("{entry}pull = true\n"));
            }
            std::fs::write(&file, text)?;
        }
        Ok(())
    }

    /// `push publish`'s `--channel`: the folder the hosts poll over HTTP.
    pub fn channel_url(&self) -> String {
        format!(
            "file://{}",
            self.lab.cache_dir().join(CHANNEL_FOLDER).display()
        )
    }

    /// Waits until every host has switched ([`BenchFleet::check_switched`]),
    /// looking every [`SWITCH_CHECK_PERIOD`]; past `timeout`, the last
    /// reason one had not.
    pub fn wait_until_switched(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.check_switched() {
                Ok(()) => return Ok(()),
                Err(error) if started.elapsed() > timeout => {
                    return Err(error.context(format!("not every host switched in {timeout:?}")))
                }
                Err(_) => std::thread::sleep(SWITCH_CHECK_PERIOD),
            }
        }
    }

    /// After `way`: every host switched ([`BenchFleet::check_switched`]);
    /// after the pull way, whose clock stops at the switch, also every
    /// host's deploy ended, and succeeded, before the next deploy empties
    /// the stores.
    pub fn check_deployed(&self, way: Way) -> Result<()> {
        self.check_switched()?;
        if way == Way::Pull {
            self.wait_for_deploys_to_end()?;
        }
        Ok(())
    }

    /// Waits until no host's deployd runs a deploy any more, and checks
    /// that each one's last deploy succeeded.
    fn wait_for_deploys_to_end(&self) -> Result<()> {
        for host in self.lab.hosts() {
            let started = Instant::now();
            loop {
                let answer = self.lab.ask_deployd_inside(host, "/v1/status")?;
                let status: StatusResponse = serde_json::from_str(&answer)
                    .with_context(|| format!("{}'s status: {answer}", host.name))?;
                if status.active_deploy.is_none() {
                    let last = status.last_deploy.map(|deploy| deploy.state);
                    ensure!(
                        last == Some(DeployState::Succeeded),
                        "{}'s last deploy ended {last:?}",
                        host.name
                    );
                    break;
                }
                ensure!(
                    started.elapsed() < DEPLOY_END_TIMEOUT,
                    "{}'s deploy did not end in {DEPLOY_END_TIMEOUT:?}",
                    host.name
                );
                std::thread::sleep(SWITCH_CHECK_PERIOD);
            }
        }
        Ok(())
    }

    /// Restarts the cache server with `pace`.
    pub fn pace_cache(&mut self, pace: Pace) -> Result<()> {
        self.lab.stop_cache()?;
        self.lab.start_cache(pace)
    }

    /// Makes every host fresh: its `/nix` emptied (store, database,
    /// profiles, GC roots: the lab makes a new host's store from an empty
    /// directory, and Nix makes the rest on first use), no
    /// `/run/current-system`, no boot entry, no memory of the cache's
    /// answers. Checked, then written to disk (`sync`), so that no deploy
    /// pays for the previous one's writes.
    pub fn make_hosts_fresh(&self) -> Result<()> {
        for host in self.lab.hosts() {
            let nix = host.outside("/nix");
            let entries =
                std::fs::read_dir(&nix).with_context(|| format!("reading {}", nix.display()))?;
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let removed = if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| format!("removing {}", path.display()))?;
            }
            for inside in [
                "/run/current-system",
                "/var/lib/lab/boot-default",
                "/var/lib/lab/switch.log",
            ] {
                remove_if_there(&host.outside(inside))?;
            }
            let nix_cache = host.outside("/var/lib/home/.cache/nix");
            if nix_cache.exists() {
                std::fs::remove_dir_all(&nix_cache)?;
            }
            let left = std::fs::read_dir(&nix)?.count();
            ensure!(left == 0, "{}'s /nix still holds {left} entries", host.name);
            ensure!(
                host.current_system().is_none(),
                "{} still has a current system",
                host.name
            );
        }
        run(&mut Command::new("sync"))?;
        Ok(())
    }

    /// Checks that every host runs its system, holds it in its profile, and
    /// holds every path of its closure in its own store.
    pub fn check_switched(&self) -> Result<()> {
        for host in self.lab.hosts() {
            let system = self.system(&host.name)?;
            ensure!(
                host.current_system().as_deref() == Some(system),
                "{} runs {:?}, not {system}",
                host.name,
                host.current_system()
            );
            ensure!(
                host.profile_system().as_deref() == Some(system),
                "{}'s profile holds {:?}, not {system}",
                host.name,
                host.profile_system()
            );
            let closure = self.closures.get(&host.name).context("no closure")?;
            if let Some(missing) = closure.iter().find(|path| !host.outside(path).exists()) {
                bail!("{} lacks {missing}", host.name);
            }
        }
        Ok(())
    }

    /// The size of the first host's closure (the others' differ by a few
    /// bytes: their names).
    pub fn closure_size(&self) -> Result<ClosureSize> {
        let (host, system) = self.systems.iter().next().context("no host")?;
        let output =
            self.lab
                .builder()
                .run(&["nix", "path-info", "--json", "--closure-size", system])?;
        let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        // Nix before 2.19 answers a list, later ones an object keyed by path.
        let entry = match &info {
            serde_json::Value::Array(entries) => entries.first(),
            serde_json::Value::Object(entries) => entries.values().next(),
            _ => None,
        };
        let bytes = entry
            .and_then(|entry| entry["closureSize"].as_u64())
            .context("nix path-info gave no closureSize")?;
        Ok(ClosureSize {
            paths: self.closures.get(host).map_or(0, Vec::len),
            bytes,
        })
    }

    /// The shape of the first host's closure (paths, bytes, depth), as the
    /// cache's narinfos tell it.
    pub fn closure_shape(&self) -> Result<ClosureShape> {
        let system = self.systems.values().next().context("no host")?;
        closure_shape::read(&self.lab.cache_dir(), system)
    }

    /// A `push` command from the operator's side, signing with the fleet's
    /// deploy key.
    pub fn push_command(&self) -> Result<Command> {
        self.lab.push_command(&self.key_file, &self.operator_state)
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// How often the hosts poll their channel, in seconds.
    pub fn pull_interval_s(&self) -> u64 {
        self.pull_interval_s
    }

    /// The revision deployed.
    pub fn rev(&self) -> &str {
        &self.rev
    }

    /// `host`'s system.
    pub fn system(&self, host: &str) -> Result<&str> {
        self.systems
            .get(host)
            .map(String::as_str)
            .with_context(|| format!("no system for {host}"))
    }

    /// How to reach `host` over SSH.
    pub fn ssh(&self, host: &str) -> Result<&SshAccess> {
        self.ssh
            .get(host)
            .with_context(|| format!("no sshd runs on {host}"))
    }

    /// Takes the lab down, then deletes from this machine's store what the
    /// untimed push built there (the systems and their bulk paths, no longer
    /// rooted once the lab's directory is gone), so that runs do not pile
    /// up hundreds of megabytes. Nix refuses to delete a path still in use.
    pub fn down(mut self) -> Result<()> {
        let built: Vec<String> = self
            .closures
            .values()
            .flatten()
            .filter(|path| path.contains("-nixos-system-") || path.contains("-bulk-"))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.lab.down()?;
        if !built.is_empty() {
            let output = deployd_lab::run::output_within(
                Command::new("nix-store").arg("--delete").args(&built),
                deployd_lab::run::DEFAULT_TIMEOUT,
            )?;
            if !output.status.success() {
                eprintln!(
                    "bench: left push's build in this machine's store: {}",
                    stderr_tail(&output)
                );
            }
        }
        Ok(())
    }
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}
