//! `push [--host H]... [--all] [REV]`: check the options, resolve the
//! revision, run the rollout (see [`crate::rollout`], the same code path as
//! `push serve`), and print a summary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use deployd_protocol::{Action, HostName};

use crate::inventory::Inventory;
use crate::keys::signing_key;
use crate::outcome;
use crate::progress::Progress;
use crate::revision::FlakeRepository;
use crate::rollout::{rollout, BuildSource, Rollout, RolloutSettings, Unobserved};

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
    /// The deploy key: a Nix-format secret key, or an SSH public key or
    /// certificate held by ssh-agent; default DEPLOYD_KEY_FILE, then push.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Magic rollback: hosts roll back unless push confirms within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
    /// Allow a revision that does not descend from the one a host runs.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Activate the system's specialisation NAME (by default a host running
    /// a specialisation stays in the one of the same name).
    #[arg(long, value_name = "NAME")]
    pub specialisation: Option<String>,
    /// Deploy to at most N hosts at once (default: all).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Send the deploys and exit without following them.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the summary as JSON on stdout (one object per host: result,
    /// reason, deploy id, revision, store path, times) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The git revision to deploy (a commit, branch, tag or short hash).
    #[arg(default_value = "HEAD")]
    pub rev: String,
}

/// Runs `push`.
pub async fn run(options: DeployOptions) -> Result<std::process::ExitCode> {
    if let Some(0) | Some(3601..) = options.confirm {
        bail!("--confirm must be 1 to 3600 seconds");
    }
    if options.confirm.is_some() && options.no_wait {
        bail!("--confirm needs push to follow the deploys: it cannot go with --no-wait");
    }
    let inventory = Inventory::load(&options.flake)?;
    let targets = inventory.select(&options.hosts, options.all)?;
    let key = signing_key(options.key.as_deref(), &inventory, &options.flake)?;
    let plan = Rollout {
        flake_dir: options.flake.clone(),
        targets,
        rev: FlakeRepository::open(&options.flake)?.resolve(&options.rev)?,
        settings: RolloutSettings {
            action: options.action,
            confirm_s: options.confirm,
            allow_downgrade: options.allow_downgrade,
            specialisation: options.specialisation,
            parallel: options.parallel,
            no_wait: options.no_wait,
            build: BuildSource::Inventory {
                build_host: options.build_host,
            },
            // An operator sees `busy` and decides.
            busy_wait: std::time::Duration::ZERO,
        },
        inventory,
        key,
    };
    // Bad input stops here, before the hosts are asked anything.
    plan.preflight()?;
    let names: Vec<String> = plan.targets.iter().map(|t| t.name.to_string()).collect();
    eprintln!("push: revision {} to {}", plan.rev, names.join(", "));
    let progress = Progress::new(&names);
    let results = rollout(plan, progress, Arc::new(Unobserved)).await?;
    if options.json {
        println!("{}", outcome::json(&results));
    } else {
        print!("{}", outcome::summary(&results));
    }
    Ok(outcome::exit_code(&results))
}
