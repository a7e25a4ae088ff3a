//! One rollout of a revision to a set of hosts, the code path `push REV`
//! and `push serve` share: ask each host what it runs and refuse a
//! downgrade, build every host's system at exactly that commit, make sure
//! each host's caches hold it signed for it, sign the deploys (one message
//! per host with a key file, one per batch with a key in `ssh-agent`, each
//! batch when it starts), send them batch by batch (see [`send`]), follow
//! them to their end. Without a canary or batches, one host's refusal,
//! failed build or silence never stops the others; with them, failures
//! beyond the budget stop the hosts not yet started. Every host ends with a
//! [`HostResult`], told to the [`RolloutObserver`] as it happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use deployd_protocol::api::StatusResponse;
use deployd_protocol::{Action, HostName, Revision, StorePath};

mod pull;
mod send;

pub use pull::{HeldRevision, PullChannel};

use crate::batches::{Batch, BatchName, Policy};
use crate::build::{build, BuildMachine, BuildPlan};
use crate::cache_check::{check, host_caches, Verdict};
use crate::client::{Client, HostError};
use crate::inventory::{Inventory, Target};
use crate::keys::DeployKey;
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::revision::FlakeRepository;
use crate::tls::Clients;

/// Told how each host of a rollout gets on, as it happens.
pub trait RolloutObserver: Send + Sync {
    /// The host accepted its deploy request, which started `deploy_id`.
    fn deploying(&self, _host: &str, _deploy_id: &str) {}
    /// The host pulls: its deploy `deploy_id` was published to its channel
    /// as desired state `sequence`.
    fn published(&self, _host: &str, _deploy_id: &str, _sequence: u64) {}
    /// The host is done: deployed, failed, refused, unreachable or not built.
    fn ended(&self, _result: &HostResult) {}
    /// The rollout goes in these batches (told before anything is built).
    fn planned(&self, _batches: &[Batch]) {}
    /// The host entered `phase`: its deploy's state, or push's word for
    /// where it is (told through [`Progress::telling`]).
    fn phase(&self, _host: &str, _phase: &str) {}
    /// A log line of the host's deploy, or a note of push's about the host
    /// (told through [`Progress::telling`]).
    fn line(&self, _host: &str, _line: &str) {}
}

/// An observer that is told nothing (the command line's own display is
/// [`Progress`]).
pub struct Unobserved;

impl RolloutObserver for Unobserved {}

/// How the hosts are deployed.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// How to activate.
    pub action: Action,
    /// Magic rollback: the hosts roll back unless confirmed within this.
    pub confirm_s: Option<u64>,
    /// Deploy a revision that does not descend from a host's.
    pub allow_downgrade: bool,
    /// Deploy a system even where it failed or rolled back lately
    /// (`quarantined`).
    pub retry_failed: bool,
    /// The specialisation every host activates (none: each keeps its own).
    pub specialisation: Option<String>,
    /// At most this many hosts at once inside a batch (default: all).
    pub parallel: Option<usize>,
    /// The canary, the batches and the failure budget.
    pub policy: Policy,
    /// Send and do not follow.
    pub no_wait: bool,
    /// Where the build machine's settings come from.
    pub build: BuildSource,
    /// How long to keep resending a deploy a host refuses as `busy` (one
    /// deploy at a time): zero to give up at once.
    pub busy_wait: Duration,
}

/// Where the build machine's settings (`build_host`, `copy_to`,
/// `sign_key_file`) come from.
#[derive(Debug, Clone)]
pub enum BuildSource {
    /// `push`: push.toml's `[defaults]`, `--build-host` before its own.
    Inventory {
        /// `--build-host`.
        build_host: Option<String>,
    },
    /// `push serve`: its own config's `[build]`; the repository's push.toml
    /// is never read for them (a commit chooses nothing the build machine
    /// holds).
    Service(BuildMachine),
}

/// A rollout: what to deploy where, signed with which key.
pub struct Rollout {
    /// The flake's directory (push.toml at its root), in a git work tree.
    pub flake_dir: PathBuf,
    /// Its push.toml.
    pub inventory: Inventory,
    /// The hosts.
    pub targets: Vec<Target>,
    /// The commit, resolved.
    pub rev: Revision,
    /// How.
    pub settings: RolloutSettings,
    /// Signs the deploys, the confirms and (a file key) the reads.
    pub key: DeployKey,
    /// Where the hosts that pull (`pull = true`) get their deploys: push
    /// serve's channel; none on the command line (they are refused).
    pub channel: Option<Arc<dyn PullChannel>>,
}

impl Rollout {
    /// What can be checked before anything is built: the batches, the
    /// message lifetime, the build host's name, the cache signing key. Bad
    /// input, not a host's failure. The batches, planned.
    pub fn preflight(&self) -> Result<Vec<Batch>> {
        let settings = &self.settings;
        if settings.parallel == Some(0) {
            bail!("--parallel must be at least 1");
        }
        if settings.no_wait && settings.policy.is_staged() {
            bail!("a rollout in batches (canary, batch) follows each batch to its end before the next: it cannot go with --no-wait");
        }
        self.inventory.defaults.message_lifetime_s()?;
        let names: Vec<HostName> = self.targets.iter().map(|t| t.name.clone()).collect();
        let batches = settings.policy.plan(&names)?;
        check_machine(&self.machine())?;
        Ok(batches)
    }

    /// The build machine's settings for this rollout.
    pub fn machine(&self) -> BuildMachine {
        match &self.settings.build {
            BuildSource::Service(machine) => machine.clone(),
            BuildSource::Inventory { build_host } => {
                inventory_machine(&self.inventory, build_host.clone())
            }
        }
    }
}

/// The build machine of push on the command line (`push`, `push publish`):
/// push.toml's `[defaults]`, `build_host` (`--build-host`) before its own.
pub fn inventory_machine(inventory: &Inventory, build_host: Option<String>) -> BuildMachine {
    let defaults = &inventory.defaults;
    BuildMachine {
        build_host: build_host.or(defaults.build_host.clone()),
        copy_to: defaults.copy_to.clone(),
        sign_key_file: defaults
            .sign_key_file
            .as_ref()
            .map(|path| inventory.root().join(path)),
        build_user: None,
    }
}

/// What can be told of the build machine before anything is built: the
/// build host's name, the cache signing key readable. Bad input.
pub fn check_machine(machine: &BuildMachine) -> Result<()> {
    if let Some(build_host) = &machine.build_host {
        crate::nix::check_build_host(build_host).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &machine.sign_key_file {
        // Checked now, not after a build that may take hours.
        std::fs::File::open(path).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the cache signing key {}: {error}",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// Runs a rollout to its end. `Err` only when nothing could be sent to any
/// host (a host's caches lack its system); each host's own trouble is its
/// [`HostResult`].
pub async fn rollout(
    plan: Rollout,
    progress: Progress,
    observer: Arc<dyn RolloutObserver>,
) -> Result<Vec<HostResult>> {
    let batches = plan.preflight()?;
    observer.planned(&batches);
    let flake = FlakeRepository::open(&plan.flake_dir)?.flake_reference(&plan.rev);
    let client = Client::new(plan.key.reader());
    let results = Results::new(observer.clone(), progress.clone(), &plan.rev);
    let (pulling, called): (Vec<Target>, Vec<Target>) = plan
        .targets
        .iter()
        .cloned()
        .partition(|target| plan.pulls(&target.name));
    let statuses = statuses(&client, &called).await;
    // git2 walks history here: off the runtime's threads.
    let (mut reachable, mut pulling) = tokio::task::block_in_place(|| {
        let reachable = admit_hosts(&plan, statuses, &results)?;
        Ok::<_, anyhow::Error>((reachable, admit_pulling(&plan, pulling, &results)))
    })?;
    let to_build: Vec<HostName> = reachable
        .iter()
        .map(|(target, _)| &target.name)
        .chain(pulling.keys())
        .cloned()
        .collect();
    let systems = build_systems(&plan, &flake, &to_build, &results).await;
    reachable.retain(|(target, _)| systems.contains_key(&target.name));
    pulling.retain(|host, _| systems.contains_key(host));
    // A pulling host's caches are not known here (it is never asked).
    check_caches(&reachable, &systems, plan.machine().copy_to.as_deref()).await?;

    let pull_checked = pulling
        .iter()
        .map(|(host, (_, checked))| (host.clone(), *checked))
        .collect();
    let ready: BTreeMap<HostName, (Target, StorePath)> = reachable
        .into_iter()
        .map(|(target, _)| target)
        .chain(pulling.into_values().map(|(target, _)| target))
        .filter_map(|target| {
            let system = systems.get(&target.name)?.clone();
            Some((target.name.clone(), (target, system)))
        })
        .collect();
    let sender = send::Sender {
        plan: &plan,
        flake: &flake,
        client,
        progress,
        observer,
        results: &results,
        pull_checked,
    };
    send::send_batches(&sender, &batches, &ready).await;
    Ok(results.into_sorted())
}

/// The hosts' results as they come, each told to the observer once.
struct Results {
    observer: Arc<dyn RolloutObserver>,
    progress: Progress,
    rev: Revision,
    all: std::sync::Mutex<Vec<HostResult>>,
    /// Each host's batch, in a rollout in batches.
    batches: std::sync::Mutex<BTreeMap<String, BatchName>>,
}

impl Results {
    fn new(observer: Arc<dyn RolloutObserver>, progress: Progress, rev: &Revision) -> Self {
        Results {
            observer,
            progress,
            rev: rev.clone(),
            all: Default::default(),
            batches: Default::default(),
        }
    }

    fn lock_all(&self) -> std::sync::MutexGuard<'_, Vec<HostResult>> {
        self.all
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `host` has its result.
    fn has(&self, host: &HostName) -> bool {
        self.lock_all()
            .iter()
            .any(|result| result.host == host.as_str())
    }

    /// Whether `host` has a result, and it is not a success.
    fn failed(&self, host: &HostName) -> bool {
        self.lock_all()
            .iter()
            .any(|result| result.host == host.as_str() && !result.succeeded())
    }

    /// `hosts` are in batch `name`.
    fn set_batch(&self, hosts: &[HostName], name: BatchName) {
        let mut batches = self
            .batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for host in hosts {
            batches.insert(host.to_string(), name);
        }
    }

    fn add(&self, result: HostResult) {
        self.observer.ended(&result);
        self.lock_all().push(result);
    }

    /// A host that ended before anything was sent to it.
    fn add_unsent(&self, host: &HostName, result: outcome::Result) {
        self.progress.phase(host.as_str(), outcome::phase(&result));
        self.add(HostResult {
            host: host.to_string(),
            rev: Some(self.rev.clone()),
            result,
            elapsed: Default::default(),
            batch: None,
        });
    }

    fn into_sorted(self) -> Vec<HostResult> {
        let batches = self
            .batches
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all = self
            .all
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for result in &mut all {
            result.batch = batches.get(&result.host).map(ToString::to_string);
        }
        all.sort_by(|a, b| a.host.cmp(&b.host));
        all
    }
}

/// The hosts that answered and may take this revision; the others are
/// reported (unreachable, or refused as a downgrade).
fn admit_hosts(
    plan: &Rollout,
    statuses: Vec<(Target, Result<StatusResponse, HostError>)>,
    results: &Results,
) -> Result<Vec<(Target, StatusResponse)>> {
    let repository = FlakeRepository::open(&plan.flake_dir)?;
    let rev = &plan.rev;
    let mut reachable = Vec::new();
    for (target, status) in statuses {
        let status = match status {
            Ok(status) => status,
            Err(HostError::Unreachable(why)) => {
                results.add_unsent(&target.name, outcome::Result::Unreachable(why.to_string()));
                continue;
            }
            Err(error) => {
                let result = outcome::Result::Refused(error.to_string());
                results.add_unsent(&target.name, result);
                continue;
            }
        };
        if status.hostname != target.name {
            // Its address is another machine's: nothing is built or sent
            // for a deploy that host would refuse (wrong_host).
            let why = format!(
                "{} answers as {}: is its address another machine's? (a deploy would be refused: wrong_host)",
                target.url, status.hostname
            );
            results.add_unsent(&target.name, outcome::Result::Refused(why));
            continue;
        }
        let running = status
            .current_deploy
            .as_ref()
            .and_then(|deploy| deploy.rev.clone());
        let downgrade = match (running, plan.settings.allow_downgrade) {
            (Some(running), false) => match repository.descends_from(rev, &running) {
                Some(true) => None,
                Some(false) => Some(format!(
                    "it runs {running}, and {rev} does not descend from it; pass --allow-downgrade to deploy it anyway"
                )),
                None => Some(format!(
                    "it runs {running}, which this repository does not have (fetch its history), so a downgrade cannot be ruled out; pass --allow-downgrade to deploy anyway"
                )),
            },
            _ => None,
        };
        match downgrade {
            // Refused for this host alone; the others go on.
            Some(why) => results.add_unsent(&target.name, outcome::Result::Refused(why)),
            None => reachable.push((target, status)),
        }
    }
    Ok(reachable)
}

/// The pulling hosts that may take this revision, each with the sequence
/// its channel held when checked: with a channel, those whose channel does
/// not hold a revision this one does not descend from; without one, none
/// (each is refused, saying how it is deployed).
fn admit_pulling(
    plan: &Rollout,
    pulling: Vec<Target>,
    results: &Results,
) -> BTreeMap<HostName, (Target, Option<u64>)> {
    let Some(channel) = plan.channel.as_deref() else {
        for target in pulling {
            let result = outcome::Result::Refused(pull::without_channel());
            results.add_unsent(&target.name, result);
        }
        return BTreeMap::new();
    };
    pulling
        .into_iter()
        .filter_map(
            |target| match pull::downgrade(plan, channel, &target.name) {
                Err(why) => {
                    results.add_unsent(&target.name, outcome::Result::Refused(why));
                    None
                }
                Ok(checked) => Some((target.name.clone(), (target, checked))),
            },
        )
        .collect()
}

/// Builds the systems of `hosts` (those that answered, and those that
/// pull); a host whose system did not build (or all, when the build itself
/// failed) is reported.
async fn build_systems(
    plan: &Rollout,
    flake: &str,
    hosts: &[HostName],
    results: &Results,
) -> BTreeMap<HostName, StorePath> {
    if hosts.is_empty() {
        return BTreeMap::new();
    }
    let hosts = hosts.to_vec();
    let machine = plan.machine();
    let build_plan = BuildPlan {
        flake,
        hosts: &hosts,
        build_host: machine.build_host.as_deref(),
        copy_to: machine.copy_to.as_deref(),
        sign_key_file: machine.sign_key_file.as_deref(),
        build_user: machine.build_user.as_deref(),
    };
    let note = |line: &str| eprintln!("build: {line}");
    match build(&build_plan, note).await {
        Ok(built) => {
            for (host, why) in built.failed {
                eprintln!("push: {host}'s system did not build: {why}");
                results.add_unsent(&host, outcome::Result::BuildFailed(why));
            }
            built.systems
        }
        Err(error) => {
            eprintln!("push: the build failed: {error:#}");
            let why = crate::inventory::one_line(&format!("{error:#}"));
            for host in &hosts {
                results.add_unsent(host, outcome::Result::BuildFailed(why.clone()));
            }
            BTreeMap::new()
        }
    }
}

/// Stops, before anything is sent, when a host's caches lack its system
/// (or hold it signed by no key the host trusts); warns when that cannot be
/// told from here.
async fn check_caches(
    hosts: &[(Target, StatusResponse)],
    systems: &BTreeMap<HostName, StorePath>,
    copy_to: Option<&str>,
) -> Result<()> {
    let clients = Clients::new(|builder| builder);
    let mut checks = Vec::new();
    for (target, status) in hosts {
        let Some(system) = systems.get(&target.name) else {
            continue;
        };
        // A cache may be http:// for a host reached over https://.
        let http = clients.get(&target.trust, false)?;
        let caches = host_caches(target.name.as_str(), status, copy_to);
        checks.push(async move { check(&http, &caches, system).await });
    }
    for verdict in futures_util::future::join_all(checks).await {
        match verdict {
            Verdict::Present => {}
            Verdict::Unknown(why) => eprintln!("push: warning: {why}; sending anyway"),
            Verdict::Missing(why) => bail!("{why}: no deploy was sent"),
        }
    }
    Ok(())
}

/// Every target's status, asked all at once.
pub async fn statuses(
    client: &Client,
    targets: &[Target],
) -> Vec<(Target, Result<StatusResponse, HostError>)> {
    let asks = targets
        .iter()
        .map(|target| async move { (target.clone(), client.status(target).await) });
    futures_util::future::join_all(asks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout_with(build: BuildSource) -> Rollout {
        let inventory: Inventory = toml::from_str(
            "[defaults]\nbuild_host = \"attacker@elsewhere\"\ncopy_to = \"file:///elsewhere\"\n\
             sign_key_file = \"/run/agenix/ci-1.secret\"\n[hosts.sambirano]\n",
        )
        .expect("inventory");
        let key =
            deployd_protocol::SecretKey::generate("ci-1".parse().expect("name")).expect("key");
        Rollout {
            flake_dir: PathBuf::from("/srv/fleet"),
            targets: Vec::new(),
            rev: "a".repeat(40).parse().expect("rev"),
            settings: RolloutSettings {
                action: Action::Switch,
                confirm_s: None,
                allow_downgrade: false,
                retry_failed: false,
                specialisation: None,
                parallel: None,
                policy: Policy::default(),
                no_wait: false,
                build,
                busy_wait: Duration::ZERO,
            },
            inventory,
            key: DeployKey::File(Arc::new(key)),
            channel: None,
        }
    }

    #[test]
    fn push_serve_builds_by_its_own_settings_never_the_inventory() {
        let own = BuildMachine {
            copy_to: Some("file:///srv/cache".into()),
            ..BuildMachine::default()
        };
        let machine = rollout_with(BuildSource::Service(own)).machine();
        assert_eq!(machine.build_host, None);
        assert_eq!(machine.copy_to.as_deref(), Some("file:///srv/cache"));
        assert_eq!(machine.sign_key_file, None);

        // push on the command line: push.toml's, --build-host first.
        let machine = rollout_with(BuildSource::Inventory { build_host: None }).machine();
        assert_eq!(machine.build_host.as_deref(), Some("attacker@elsewhere"));
        assert_eq!(machine.copy_to.as_deref(), Some("file:///elsewhere"));
        assert_eq!(
            machine.sign_key_file,
            Some(PathBuf::from("/run/agenix/ci-1.secret"))
        );
        let machine = rollout_with(BuildSource::Inventory {
            build_host: Some("builder@kelyus".into()),
        })
        .machine();
        assert_eq!(machine.build_host.as_deref(), Some("builder@kelyus"));
    }
}
