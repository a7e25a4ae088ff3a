//! `push publish [--channel URL] [selection] [REV]`: the deploy of hosts
//! that cannot be reached (docs/src/design/channels.md). Builds every
//! selected host's system at REV as `push` does (the same build, the same
//! cache check against `copy_to`), then signs, per host, a desired state
//! (payload type `application/vnd.deployd.desired.v1+json`) whose sequence
//! is one above the state the channel holds, and writes it to the channel
//! as `hosts/<host>.json`. A host whose held state deploys a revision REV
//! does not descend from is refused, unless `--allow-downgrade`. Each host
//! pulls and verifies its state itself; nothing here reaches a host.
//!
//! Exit status as for every subcommand ([`crate::exit`]): 0 every host's
//! state was written; 1 a host was refused, did not build, or its state
//! could not be read or written; 2 bad usage, config or input.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use deployd_protocol::{
    Action, DeployRequest, DesiredState, HostName, Revision, StorePath, DEFAULT_MAX_DESIRED_AGE_S,
    DESIRED_PAYLOAD_TYPE, LONGEST_DESIRED_AGE_S,
};

mod channel;
mod held;
mod s3;
mod serve_channel;
#[cfg(test)]
mod serve_channel_tests;
mod summary;

use channel::{Channel, Written};
use held::{downgrade_refusal, next_sequence, Held};
use summary::{Outcome, Published};

use crate::build::{build, BuildMachine, BuildPlan};
use crate::cache_check::{check, HostCaches, Verdict};
use crate::flake::FlakeArg;
use crate::inventory::Inventory;
use crate::keys::{key_file_path, signing_key, DeployKey};
use crate::revision::FlakeRepository;
use crate::rollout::{check_machine, inventory_machine};
use crate::selection::Selection;

/// What `--help` says about the exit statuses.
pub const EXIT_HELP: &str = "Exit status: 0 every selected host's state was written; 1 a host \
                             was refused (a downgrade), its system did not build, or the channel \
                             could not be read or written for it; 2 bad usage, config or input.";

/// Options of `push publish`.
#[derive(Debug, clap::Args)]
pub struct PublishOptions {
    /// The channel: file:///DIR, s3://BUCKET/PREFIX[?region=R&endpoint=E&scheme=http]
    /// (credentials from the AWS_* environment) or push serve's
    /// https://SERVE/v1/channel; default: push.toml's [defaults] channel.
    #[arg(long, value_name = "URL")]
    pub channel: Option<String>,
    /// The hosts to publish for; --all selects the hosts with `pull = true`
    /// (a host named otherwise gets a state whether it pulls or not).
    #[command(flatten)]
    pub selection: Selection,
    /// How the hosts activate: switch, boot, test or dry-activate.
    #[arg(long, default_value = "switch")]
    pub action: Action,
    /// The flake's directory, or DIR#HOST to publish for HOST as well (as
    /// `push` takes it).
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
    /// Build on this machine over SSH (ssh-ng) instead of here.
    #[arg(long, value_name = "HOST")]
    pub build_host: Option<String>,
    /// The deploy key: a Nix-format secret key, or an SSH public key or
    /// certificate held by ssh-agent (one signature, so one touch of a
    /// security key, per host); default DEPLOYD_KEY_FILE, then push.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Publish a revision that does not descend from the one the channel
    /// holds for a host (and let the host go back to it).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Let hosts apply the system even where it failed or rolled back
    /// within their quarantine_s.
    #[arg(long)]
    pub retry_failed: bool,
    /// How long each state stays valid, in seconds: at most 31622400 (366
    /// days), and a host accepts no longer than its max_desired_age_s
    /// (default 30 days).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_DESIRED_AGE_S)]
    pub lifetime: u64,
    /// Print the result as JSON on stdout (one object per host: host,
    /// result, sequence, rev, store path, channel, reason).
    #[arg(long)]
    pub json: bool,
    /// The git revision to publish (a commit, branch, tag or short hash).
    #[arg(default_value = "HEAD")]
    pub rev: String,
}

/// Everything a host's state needs besides the host.
struct Publisher {
    channel: Channel,
    channel_url: String,
    repository: FlakeRepository,
    rev: Revision,
    flake: String,
    key: DeployKey,
    options: PublishOptions,
}

/// Runs `push publish`.
pub async fn run(options: PublishOptions) -> Result<ExitCode> {
    if !(1..=LONGEST_DESIRED_AGE_S).contains(&options.lifetime) {
        bail!("--lifetime must be 1 to {LONGEST_DESIRED_AGE_S} seconds (366 days)");
    }
    let inventory = Inventory::load(&options.flake.dir)?;
    let hosts = selected_hosts(&inventory, &options)?;
    let channel_url = options
        .channel
        .clone()
        .or_else(|| inventory.defaults.channel.clone())
        .context("no channel: give --channel URL, or set channel in push.toml's [defaults]")?;
    let channel = Channel::open(&channel_url, &inventory.defaults_trust()?)?;
    let key = signing_key(options.key.as_deref(), &inventory)?;
    let repository = FlakeRepository::open(inventory.root())?;
    let rev = repository.resolve(&options.rev)?;
    let machine = inventory_machine(&inventory, options.build_host.clone());
    check_machine(&machine)?;
    let key_file = key_file_path(options.key.as_deref(), &inventory);
    let warnings = crate::deploy::warnings(&inventory, &repository, &rev, (key_file, &machine));
    for warning in warnings {
        eprintln!("push: warning: {warning}");
    }
    if matches!(channel, Channel::Serve(_)) {
        for host in hosts.iter().filter(|host| {
            inventory
                .hosts
                .get(*host)
                .is_some_and(|entry| entry.host_key.is_none())
        }) {
            eprintln!("push: warning: {host} has no host_key in push.toml: push serve will refuse its reports until it is pinned");
        }
    }
    let names: Vec<&str> = hosts.iter().map(HostName::as_str).collect();
    let shown_url = deployd_command::redact::mask_credentials(&channel_url).into_owned();
    eprintln!(
        "push: publishing revision {rev} for {} to {shown_url}",
        names.join(", ")
    );
    let publisher = Publisher {
        flake: repository.flake_reference(&rev),
        channel,
        channel_url: shown_url,
        repository,
        rev,
        key,
        options,
    };
    let outcomes = publish(&publisher, &inventory, &machine, hosts).await?;
    if publisher.options.json {
        println!("{}", summary::json(&outcomes));
    } else {
        print!("{}", summary::table(&outcomes));
    }
    Ok(crate::exit::hosts(
        outcomes.iter().any(|outcome| !outcome.succeeded()),
    ))
}

/// The hosts to publish for: those the selection names, where `--all`
/// means every host with `pull = true`.
fn selected_hosts(inventory: &Inventory, options: &PublishOptions) -> Result<Vec<HostName>> {
    let selection = options
        .selection
        .clone()
        .and_host(options.flake.host.as_ref());
    let named = Selection {
        all: false,
        ..selection.clone()
    };
    let mut hosts: Vec<HostName> = if named.is_empty() {
        Vec::new()
    } else {
        inventory
            .select(&named)?
            .into_iter()
            .map(|target| target.name)
            .collect()
    };
    if selection.all {
        let pulling = inventory
            .hosts
            .iter()
            .filter(|(_, entry)| entry.pull)
            .map(|(name, _)| name.clone());
        hosts.extend(pulling);
        if hosts.is_empty() {
            bail!("--all selects the hosts with pull = true, and push.toml has none: name the hosts with --host or --on");
        }
    } else if hosts.is_empty() {
        // Says what to name, as push does.
        selection.resolve(std::iter::empty())?;
    }
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// Reads what the channel holds, refuses downgrades, builds, checks the
/// cache and writes each host's state. `Err` only for bad input found on
/// the way (a cache that lacks a system, as `push` stops).
async fn publish(
    publisher: &Publisher,
    inventory: &Inventory,
    machine: &BuildMachine,
    hosts: Vec<HostName>,
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let reads = hosts.iter().map(|host| read_held(&publisher.channel, host));
    let mut admitted = Vec::new();
    for (host, held) in hosts
        .iter()
        .zip(futures_util::future::join_all(reads).await)
    {
        let refusal = match &held {
            Ok(held) => tokio::task::block_in_place(|| {
                downgrade_refusal(
                    &publisher.repository,
                    &publisher.rev,
                    held.as_ref(),
                    publisher.options.allow_downgrade,
                )
            }),
            Err(error) => Some(format!("{error:#}")),
        };
        match (refusal, held) {
            (None, Ok(held)) => admitted.push((host.clone(), held)),
            (Some(why), Ok(_)) => outcomes.push(Outcome::refused(host, &publisher.rev, why)),
            (_, Err(error)) => outcomes.push(Outcome::failed(host, &publisher.rev, &error)),
        }
    }
    let names: Vec<HostName> = admitted.iter().map(|(host, _)| host.clone()).collect();
    let systems = build_systems(publisher, machine, &names, &mut outcomes).await;
    check_cache(inventory, machine, &systems).await?;
    let writes = admitted.into_iter().filter_map(|(host, held)| {
        let system = systems.iter().find(|(name, _)| *name == host)?.1.clone();
        Some(async move {
            match publish_host(publisher, &host, &system, held).await {
                Ok(published) => Outcome::published(&host, published),
                Err(HostFailure::Refused(why)) => Outcome::refused(&host, &publisher.rev, why),
                Err(HostFailure::Failed(error)) => Outcome::failed(&host, &publisher.rev, &error),
            }
        })
    });
    outcomes.extend(futures_util::future::join_all(writes).await);
    outcomes.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(outcomes)
}

/// The state the channel holds for `host`, read but not verified.
async fn read_held(channel: &Channel, host: &HostName) -> Result<Option<Held>> {
    let Some(stored) = channel
        .read(host)
        .await
        .with_context(|| format!("reading {host}'s state from the channel"))?
    else {
        return Ok(None);
    };
    Held::parse(stored)
        .map(Some)
        .with_context(|| format!("the channel's state for {host}"))
}

/// Builds the systems of `hosts` with push's build; a host whose system
/// did not build gets its outcome.
async fn build_systems(
    publisher: &Publisher,
    machine: &BuildMachine,
    hosts: &[HostName],
    outcomes: &mut Vec<Outcome>,
) -> Vec<(HostName, StorePath)> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let plan = BuildPlan {
        flake: &publisher.flake,
        hosts,
        build_host: machine.build_host.as_deref(),
        copy_to: machine.copy_to.as_deref(),
        sign_key_file: machine.sign_key_file.as_deref(),
        build_user: None,
    };
    let rev = &publisher.rev;
    match build(&plan, |line| eprintln!("build: {line}")).await {
        Ok(built) => {
            for (host, why) in built.failed {
                eprintln!("push: {host}'s system did not build: {why}");
                outcomes.push(Outcome::build_failed(&host, rev, why));
            }
            built.systems.into_iter().collect()
        }
        Err(error) => {
            eprintln!("push: the build failed: {error:#}");
            let why = crate::inventory::one_line(&format!("{error:#}"));
            for host in hosts {
                outcomes.push(Outcome::build_failed(host, rev, why.clone()));
            }
            Vec::new()
        }
    }
}

/// Stops before anything is written when `copy_to` (the cache the pulling
/// hosts are expected to read: push cannot ask them) lacks a system; warns
/// when that cannot be told.
async fn check_cache(
    inventory: &Inventory,
    machine: &BuildMachine,
    systems: &[(HostName, StorePath)],
) -> Result<()> {
    let Some(copy_to) = machine.copy_to.as_deref() else {
        if !systems.is_empty() {
            eprintln!("push: warning: push.toml has no copy_to, so push cannot tell whether the hosts' caches have their systems; publishing anyway");
        }
        return Ok(());
    };
    let clients = crate::tls::Clients::new(|builder| builder);
    for (host, system) in systems {
        let trust = inventory.target(host)?.trust;
        let http = clients.get(&trust, false)?;
        let caches = HostCaches {
            host: host.as_str(),
            urls: vec![copy_to.to_owned()],
            trusted_keys: Vec::new(),
        };
        match check(&http, &caches, system).await {
            Verdict::Present => {}
            Verdict::Unknown(why) => eprintln!("push: warning: {why}; publishing anyway"),
            Verdict::Missing(why) => bail!("{why}: nothing was published"),
        }
    }
    Ok(())
}

/// Why a host's state was not written.
enum HostFailure {
    /// A downgrade, found when the channel was read again.
    Refused(String),
    /// The channel could not be read or written, or the state not signed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for HostFailure {
    fn from(error: anyhow::Error) -> Self {
        HostFailure::Failed(error)
    }
}

/// Signs and writes `host`'s state after `held`, in its place. When the
/// channel no longer holds it (someone published meanwhile), reads the
/// channel again, checks the descent again, and tries once more.
async fn publish_host(
    publisher: &Publisher,
    host: &HostName,
    system: &StorePath,
    mut held: Option<Held>,
) -> Result<Published, HostFailure> {
    let mut attempts_left = 2;
    loop {
        attempts_left -= 1;
        let sequence = next_sequence(held.as_ref())?;
        let envelope = sign_state(publisher, host, system, sequence).await?;
        let replaces = held.as_ref().map(|held| &held.stored);
        match publisher.channel.write(host, envelope, replaces).await? {
            Written::Done => {
                return Ok(Published {
                    sequence,
                    rev: publisher.rev.clone(),
                    system: system.clone(),
                    channel: publisher.channel_url.clone(),
                })
            }
            Written::Replayed(why) if attempts_left == 0 => {
                return Err(HostFailure::Failed(anyhow::anyhow!(
                    "the channel changed twice while the state was written (others keep publishing for {host}): {why}"
                )))
            }
            Written::Replayed(why) => {
                eprintln!("push: {host}: someone published meanwhile ({why}); reading the channel again");
                held = read_held(&publisher.channel, host).await?;
                let refusal = tokio::task::block_in_place(|| {
                    downgrade_refusal(
                        &publisher.repository,
                        &publisher.rev,
                        held.as_ref(),
                        publisher.options.allow_downgrade,
                    )
                });
                if let Some(why) = refusal {
                    return Err(HostFailure::Refused(why));
                }
            }
        }
    }
}

/// `host`'s desired state number `sequence`, signed (off the runtime's
/// threads: an agent may wait for a touch).
async fn sign_state(
    publisher: &Publisher,
    host: &HostName,
    system: &StorePath,
    sequence: u64,
) -> Result<Vec<u8>> {
    let options = &publisher.options;
    let id = crate::sign::new_deploy_id(host)?;
    let mut deploy =
        DeployRequest::new(id, system.clone(), options.action).context("no randomness")?;
    deploy.flake = Some(publisher.flake.clone());
    deploy.rev = Some(publisher.rev.clone());
    deploy.allow_downgrade = options.allow_downgrade;
    deploy.retry_failed = options.retry_failed;
    let state = DesiredState::new(
        host.clone(),
        deploy,
        sequence,
        crate::sign::now(),
        options.lifetime,
    );
    let key = publisher.key.clone();
    tokio::task::spawn_blocking(move || key.sign(DESIRED_PAYLOAD_TYPE, state.to_payload_bytes()))
        .await
        .context("the signing task failed")?
        .with_context(|| format!("signing {host}'s state"))
}
