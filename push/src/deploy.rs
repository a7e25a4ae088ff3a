//! `push [--host H]... [--all] [REV]`: resolve the revision, refuse a
//! downgrade, build every host's system, make sure the cache has it (and
//! that each host's caches have its system, signed for it), send one
//! signed deploy per host (`--parallel N` at a time), follow them live, and
//! print a summary. One unreachable host never stops the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use deployd_protocol::{Action, HostName, Revision, StorePath};
use tokio::sync::Semaphore;

use crate::build::{build, BuildPlan};
use crate::cache_check::{check, host_caches, Verdict};
use crate::client::{Client, HostError};
use crate::inventory::{Inventory, Target};
use crate::keys::signing_key;
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::revision::FlakeRepository;
use crate::session::{Session, StartRequest};
use crate::sign::{self, DeployDetails};

/// Options of `push` (the deploy itself).
#[derive(Debug, clap::Args)]
pub struct DeployOptions {
    /// Deploy to this host (repeat for several).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<HostName>,
    /// Deploy to every host of the inventory.
    #[arg(long)]
    pub all: bool,
    /// How to activate: switch, boot, test or dry-activate.
    #[arg(long, default_value = "switch")]
    pub action: Action,
    /// The flake's directory (with push.toml at its root).
    #[arg(long, default_value = ".")]
    pub flake: PathBuf,
    /// Build on this machine over SSH (ssh-ng) instead of here.
    #[arg(long, value_name = "HOST")]
    pub build_host: Option<String>,
    /// The deploy key (secret); default DEPLOYD_KEY_FILE, then push.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Magic rollback: hosts roll back unless push confirms within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
    /// Allow a revision that does not descend from the one a host runs.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Deploy to at most N hosts at once (default: all).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Send the deploys and exit without following them.
    #[arg(long)]
    pub no_wait: bool,
    /// The git revision to deploy (a commit, branch, tag or short hash).
    #[arg(default_value = "HEAD")]
    pub rev: String,
}

/// Everything the per-host tasks share.
struct Shared {
    session: Session,
    options: DeployOptions,
    rev: Revision,
    flake: String,
}

/// Runs `push`.
pub async fn run(options: DeployOptions) -> Result<std::process::ExitCode> {
    if options.parallel == Some(0) {
        bail!("--parallel must be at least 1");
    }
    if let Some(0) | Some(3601..) = options.confirm {
        bail!("--confirm must be 1 to 3600 seconds");
    }
    if options.confirm.is_some() && options.no_wait {
        bail!("--confirm needs push to follow the deploys: it cannot go with --no-wait");
    }
    let inventory = Inventory::load(&options.flake)?;
    let targets = inventory.select(&options.hosts, options.all)?;
    let build_host = options
        .build_host
        .as_deref()
        .or(inventory.defaults.build_host.as_deref());
    if let Some(build_host) = build_host {
        crate::nix::check_build_host(build_host).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &inventory.defaults.sign_key_file {
        // Checked now, not after a build that may take hours.
        let path = options.flake.join(path);
        std::fs::File::open(&path).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the cache signing key {}: {error}",
                path.display()
            )
        })?;
    }
    let key = Arc::new(signing_key(
        options.key.as_deref(),
        &inventory,
        &options.flake,
    )?);
    let repository = FlakeRepository::open(&options.flake)?;
    let rev = repository.resolve(&options.rev)?;
    let flake = repository.flake_reference(&rev);
    let client = Client::new(Some(key.clone()));
    let names: Vec<String> = targets.iter().map(|t| t.name.to_string()).collect();
    let progress = Progress::new(&names);
    eprintln!("push: revision {rev} to {}", names.join(", "));

    // Ask each host what it runs; refuse to go back without --allow-downgrade.
    let mut results = Vec::new();
    let mut reachable = Vec::new();
    for (target, status) in statuses(&client, &targets).await {
        match status {
            Err(error) => {
                progress.phase(target.name.as_str(), "unreachable");
                results.push(HostResult {
                    host: target.name.to_string(),
                    rev: Some(rev.clone()),
                    result: outcome::Result::Unreachable(error.to_string()),
                    elapsed: Default::default(),
                });
            }
            Ok(status) => {
                let running = status
                    .current_deploy
                    .as_ref()
                    .and_then(|deploy| deploy.rev.clone());
                let downgrade = match (running, options.allow_downgrade) {
                    (Some(running), false) => match repository.descends_from(&rev, &running) {
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
                    Some(why) => {
                        progress.phase(target.name.as_str(), "refused");
                        results.push(HostResult {
                            host: target.name.to_string(),
                            rev: Some(rev.clone()),
                            result: outcome::Result::Refused(why),
                            elapsed: Default::default(),
                        });
                    }
                    None => reachable.push((target, status)),
                }
            }
        }
    }

    let systems = if reachable.is_empty() {
        Default::default()
    } else {
        let hosts: Vec<HostName> = reachable.iter().map(|(t, _)| t.name.clone()).collect();
        let build_host = options
            .build_host
            .clone()
            .or(inventory.defaults.build_host.clone());
        let sign_key_file = inventory
            .defaults
            .sign_key_file
            .as_ref()
            .map(|path| options.flake.join(path));
        let plan = BuildPlan {
            flake: &flake,
            hosts: &hosts,
            build_host: build_host.as_deref(),
            copy_to: inventory.defaults.copy_to.as_deref(),
            sign_key_file: sign_key_file.as_deref(),
        };
        let note = |line: &str| eprintln!("build: {line}");
        match build(&plan, note).await {
            Ok(built) => {
                // A host whose system did not build is reported; the others deploy.
                for (host, why) in built.failed {
                    eprintln!("push: {host}'s system did not build: {why}");
                    progress.phase(host.as_str(), "build_failed");
                    results.push(HostResult {
                        host: host.to_string(),
                        rev: Some(rev.clone()),
                        result: outcome::Result::BuildFailed(why),
                        elapsed: Default::default(),
                    });
                }
                built.systems
            }
            Err(error) => {
                eprintln!("push: the build failed: {error:#}");
                return Ok(std::process::ExitCode::from(1));
            }
        }
    };
    reachable.retain(|(target, _)| systems.contains_key(&target.name));

    check_caches(&reachable, &systems, inventory.defaults.copy_to.as_deref()).await?;

    let session = Session {
        client,
        key,
        progress,
        no_wait: options.no_wait,
        confirm: options.confirm.is_some(),
    };
    let shared = Arc::new(Shared {
        session,
        rev,
        flake,
        options,
    });
    let permits = Arc::new(Semaphore::new(
        shared.options.parallel.unwrap_or(reachable.len().max(1)),
    ));
    let tasks: Vec<_> = reachable
        .into_iter()
        .filter_map(|(target, _)| {
            systems
                .get(&target.name)
                .cloned()
                .map(|system| (target, system))
        })
        .map(|(target, system)| {
            let (shared, permits) = (shared.clone(), permits.clone());
            let host = target.name.to_string();
            let task = tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                deploy_host(&shared, &target, &system).await
            });
            (host, task)
        })
        .collect();
    for (host, task) in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(error) => results.push(HostResult {
                host,
                rev: Some(shared.rev.clone()),
                result: outcome::Result::Refused(format!(
                    "push's task for this host failed: {error}"
                )),
                elapsed: Default::default(),
            }),
        }
    }
    results.sort_by(|a, b| a.host.cmp(&b.host));
    print!("{}", outcome::summary(&results));
    Ok(outcome::exit_code(&results))
}

/// Stops, before anything is sent, when a host's caches lack its system
/// (or hold it signed by no key the host trusts); warns when that cannot be
/// told from here.
async fn check_caches(
    hosts: &[(Target, deployd_protocol::api::StatusResponse)],
    systems: &std::collections::BTreeMap<HostName, StorePath>,
    copy_to: Option<&str>,
) -> Result<()> {
    let http = reqwest::Client::new();
    let checks = hosts.iter().filter_map(|(target, status)| {
        let system = systems.get(&target.name)?;
        let caches = host_caches(target.name.as_str(), status, copy_to);
        let http = &http;
        Some(async move { check(http, &caches, system).await })
    });
    for verdict in futures_util::future::join_all(checks).await {
        match verdict {
            Verdict::Present => {}
            Verdict::Unknown(why) => eprintln!("push: warning: {why}; sending anyway"),
            Verdict::Missing(why) => bail!("{why}: no deploy was sent"),
        }
    }
    Ok(())
}

async fn statuses(
    client: &Client,
    targets: &[Target],
) -> Vec<(
    Target,
    Result<deployd_protocol::api::StatusResponse, HostError>,
)> {
    let asks = targets
        .iter()
        .map(|target| async move { (target.clone(), client.status(target).await) });
    futures_util::future::join_all(asks).await
}

/// Sends one host its deploy and follows it.
async fn deploy_host(shared: &Shared, target: &Target, system: &StorePath) -> HostResult {
    let started = Instant::now();
    let host = target.name.as_str();
    let options = &shared.options;
    let details = DeployDetails {
        action: options.action,
        flake: Some(&shared.flake),
        rev: Some(&shared.rev),
        allow_downgrade: options.allow_downgrade,
        confirm_within_s: options.confirm,
    };
    let session = &shared.session;
    let result = match sign::deploy(&target.name, system, &details, &session.key) {
        Ok((deploy_id, envelope)) => {
            let request = StartRequest {
                path: "/v1/deploy",
                envelope,
                deploy_id,
            };
            session.send_and_follow(target, request).await
        }
        Err(error) => outcome::Result::Refused(format!("cannot sign: {error:#}")),
    };
    session.progress.phase(host, outcome::phase(&result));
    HostResult {
        host: host.to_owned(),
        rev: Some(shared.rev.clone()),
        result,
        elapsed: started.elapsed(),
    }
}
