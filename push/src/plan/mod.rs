//! `push plan [selection] [REV]`: what a deploy of REV would change on each
//! host, changing nothing. Builds as `push` does (the same build and cache
//! check), reads the built systems (see [`built`]), asks each host with a
//! signed read what only it knows (`GET /v1/plan`: the paths it lacks and
//! their size, what it runs), and shows the fleet side by side (see
//! [`compare`], [`show`]).

mod built;
mod compare;
mod show;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use deployd_protocol::{HostName, StorePath};

use crate::build::{build, BuildPlan};
use crate::cache_check::{check, host_caches, Verdict};
use crate::client::{Client, HostError};
use crate::flake::FlakeArg;
use crate::inventory::{one_line, Inventory, Target};
use crate::keys::signing_key;
use crate::revision::FlakeRepository;
use crate::rollout::{check_machine, inventory_machine};
use crate::selection::Selection;
use crate::tls::Clients;

pub use show::{HostPlan, Outcome};

/// What `push plan --help` says about its exit statuses.
pub const EXIT_HELP: &str = "Exit status: 0 every host answered with its plan; 1 at least one \
                             host was unreachable, refused, or its system did not build or is \
                             not in its caches; 2 bad usage, config or input.";

/// Options of `push plan`.
#[derive(Debug, clap::Args)]
pub struct PlanOptions {
    /// The hosts to plan for.
    #[command(flatten)]
    pub selection: Selection,
    /// The flake's directory, or DIR#HOST (as `push --flake`).
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
    /// Build on this machine over SSH (ssh-ng) instead of here.
    #[arg(long, value_name = "HOST")]
    pub build_host: Option<String>,
    /// The key that signs the reads (as `push --key`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Print the plans as JSON on stdout (one object per host) instead of
    /// the table and the details.
    #[arg(long)]
    pub json: bool,
    /// The git revision to plan (a commit, branch, tag or short hash).
    #[arg(default_value = "HEAD")]
    pub rev: String,
}

/// Runs `push plan`.
pub async fn run(options: PlanOptions) -> Result<std::process::ExitCode> {
    let inventory = Inventory::load(&options.flake.dir)?;
    let selection = options
        .selection
        .clone()
        .and_host(options.flake.host.as_ref());
    let targets = inventory.select(&selection)?;
    let key = signing_key(options.key.as_deref(), &inventory)?;
    let repository = FlakeRepository::open(inventory.root())?;
    let rev = repository.resolve(&options.rev)?;
    let machine = inventory_machine(&inventory, options.build_host.clone());
    check_machine(&machine)?;
    let names: Vec<String> = targets.iter().map(|t| t.name.to_string()).collect();
    eprintln!("push: planning revision {rev} on {}", names.join(", "));
    let client = Client::new(key.reader());
    let mut plans: BTreeMap<HostName, HostPlan> = BTreeMap::new();
    let mut reachable = Vec::new();
    for (target, status) in crate::rollout::statuses(&client, &targets).await {
        match status {
            Ok(status) => reachable.push((target, status)),
            Err(error) => {
                plans.insert(
                    target.name.clone(),
                    HostPlan::ended(&target.name, unreached(error)),
                );
            }
        }
    }
    let hosts: Vec<HostName> = reachable.iter().map(|(t, _)| t.name.clone()).collect();
    let flake = repository.flake_reference(&rev);
    let build_plan = BuildPlan {
        flake: &flake,
        hosts: &hosts,
        build_host: machine.build_host.as_deref(),
        copy_to: machine.copy_to.as_deref(),
        sign_key_file: machine.sign_key_file.as_deref(),
        build_user: None,
    };
    let systems = if hosts.is_empty() {
        BTreeMap::new()
    } else {
        let built = build(&build_plan, |line| eprintln!("build: {line}")).await?;
        for (host, why) in built.failed {
            plans.insert(
                host.clone(),
                HostPlan::ended(&host, Outcome::BuildFailed { reason: why }),
            );
        }
        built.systems
    };
    let asks = reachable.iter().filter_map(|(target, status)| {
        let system = systems.get(&target.name)?.clone();
        let caches = host_caches(target.name.as_str(), status, machine.copy_to.as_deref());
        let (client, build_host) = (&client, machine.build_host.as_deref());
        Some(async move {
            let outcome = plan_host(client, target, &caches, &system, build_host).await;
            HostPlan {
                host: target.name.to_string(),
                system: Some(system),
                outcome,
            }
        })
    });
    for plan in futures_util::future::join_all(asks).await {
        plans.insert(plan.host.parse()?, plan);
    }
    let plans: Vec<HostPlan> = plans.into_values().collect();
    if options.json {
        println!("{}", show::json(&rev, &plans));
    } else {
        print!("{}", show::text(&plans));
    }
    Ok(crate::exit::hosts(!plans.iter().all(HostPlan::planned)))
}

/// One host's plan: its caches have the system, the system as built, the
/// host's answer, compared.
async fn plan_host(
    client: &Client,
    target: &Target,
    caches: &crate::cache_check::HostCaches<'_>,
    system: &StorePath,
    build_host: Option<&str>,
) -> Outcome {
    let http = match Clients::new(|builder| builder).get(&target.trust, false) {
        Ok(http) => http,
        Err(error) => {
            return Outcome::Refused {
                reason: format!("{error:#}"),
            }
        }
    };
    match check(&http, caches, system).await {
        Verdict::Present => {}
        Verdict::Unknown(why) => eprintln!("push: warning: {why}; asking the host anyway"),
        Verdict::Missing(why) => return Outcome::NotInCache { reason: why },
    }
    let built = match built::read(system, build_host).await {
        Ok(built) => built,
        Err(error) => {
            return Outcome::BuildFailed {
                reason: one_line(&format!("{error:#}")),
            }
        }
    };
    match client.plan(target, system).await {
        Ok(answer) if answer.hostname != target.name => Outcome::Refused {
            reason: format!(
                "{} answers as {}: is its address another machine's?",
                target.url, answer.hostname
            ),
        },
        Ok(answer) => Outcome::Planned(Box::new(compare::compare(&answer, &built))),
        Err(error) => unreached(error),
    }
}

/// A host that did not answer with a plan.
fn unreached(error: HostError) -> Outcome {
    match error {
        HostError::Unreachable(why) => Outcome::Unreachable {
            reason: why.to_string(),
        },
        other => Outcome::Refused {
            reason: other.to_string(),
        },
    }
}
