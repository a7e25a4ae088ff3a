//! `push [--host H]... [--on NAMES] [--all] [REV]`: check the options,
//! resolve the revision, warn about what will not be deployed (uncommitted
//! changes) and about secret keys git could take into the Nix store, run
//! the rollout (see [`crate::rollout`], the same code path as `push
//! serve`), and print a summary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use deployd_protocol::{Action, Revision};

use crate::batches::{BatchSize, Canary, Policy};
use crate::build::BuildMachine;
use crate::flake::FlakeArg;
use crate::inventory::Inventory;
use crate::keys::{exposure_warnings, key_file_path, signing_key};
use crate::outcome;
use crate::progress::Progress;
use crate::revision::FlakeRepository;
use crate::rollout::{rollout, BuildSource, Rollout, RolloutSettings, Unobserved};
use crate::selection::Selection;

/// The heading of the rollout options in the help.
const ROLLOUT: &str = "Rollout in batches (gated on the hosts' own verdicts)";

/// Options of `push` (the deploy itself).
#[derive(Debug, clap::Args)]
pub struct DeployOptions {
    /// The hosts to deploy to: each is deployed once, however often it is
    /// named, and they go in push.toml's order (by name).
    #[command(flatten)]
    pub selection: Selection,
    /// How to activate: switch, boot, test or dry-activate (or prepare,
    /// as --prepare).
    #[arg(long, default_value = "switch")]
    pub action: Action,
    /// Only prepare: each host fetches the system and keeps it (a GC root)
    /// without switching; a later push of the same revision then switches
    /// every host without fetching. Signed as a deploy (action `prepare`).
    #[arg(long, conflicts_with_all = ["action", "confirm", "specialisation"])]
    pub prepare: bool,
    /// The flake's directory, or DIR#HOST to deploy to HOST as well (as
    /// nixos-rebuild takes it: `.#sambirano`). push.toml is looked for in
    /// DIR and its parents, up to the git repository's root; where it is
    /// found is the flake's root (what is built, and what push.toml's paths
    /// are relative to). Only committed state is deployed: uncommitted
    /// changes are named in a warning.
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
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
    /// Deploy even to hosts where this system failed or rolled back within
    /// their quarantine_s (which refuse it as quarantined otherwise).
    #[arg(long)]
    pub retry_failed: bool,
    /// Activate the system's specialisation NAME (by default a host running
    /// a specialisation stays in the one of the same name).
    #[arg(long, value_name = "NAME")]
    pub specialisation: Option<String>,
    /// Deploy to at most N hosts at once inside a batch (default: all): the
    /// batch goes in groups of N, each signed when it starts.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Canary hosts, deployed first as their own batch: a count (the first
    /// N in push.toml's order) or comma-separated names of selected hosts.
    /// The others start only if the canaries succeed (see --max-failures).
    #[arg(long, value_name = "N|NAMES", help_heading = ROLLOUT)]
    pub canary: Option<Canary>,
    /// Deploy in batches of N hosts, or P% of the selected hosts (rounded
    /// up), in push.toml's order; a batch starts when the one before has
    /// ended.
    #[arg(long, value_name = "N|P%", help_heading = ROLLOUT)]
    pub batch: Option<BatchSize>,
    /// Once more than N hosts failed, start no further host (those are
    /// reported not_started). Default 0 with --canary or --batch; needs one
    /// of them.
    #[arg(long, value_name = "N", help_heading = ROLLOUT)]
    pub max_failures: Option<usize>,
    /// Send the deploys and exit without following them (not with --canary
    /// or --batch, which wait for each batch's verdicts).
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

impl DeployOptions {
    /// What the hosts are asked to do: `--prepare`, else `--action`.
    pub fn action(&self) -> Action {
        if self.prepare {
            Action::Prepare
        } else {
            self.action
        }
    }
}

/// Runs `push`.
pub async fn run(options: DeployOptions) -> Result<std::process::ExitCode> {
    if options.action() == Action::Prepare && options.confirm.is_some() {
        bail!("--confirm cannot go with a prepare: it switches nothing to confirm");
    }
    if let Some(0) | Some(3601..) = options.confirm {
        bail!("--confirm must be 1 to 3600 seconds");
    }
    if options.confirm.is_some() && options.no_wait {
        bail!("--confirm needs push to follow the deploys: it cannot go with --no-wait");
    }
    let inventory = Inventory::load(&options.flake.dir)?;
    let selection = options
        .selection
        .clone()
        .and_host(options.flake.host.as_ref());
    let targets = inventory.select(&selection)?;
    let key = signing_key(options.key.as_deref(), &inventory)?;
    let repository = FlakeRepository::open(inventory.root())?;
    let key_file = key_file_path(options.key.as_deref(), &inventory);
    let plan = Rollout {
        flake_dir: inventory.root().to_owned(),
        targets,
        rev: repository.resolve(&options.rev)?,
        settings: RolloutSettings {
            action: options.action(),
            confirm_s: options.confirm,
            allow_downgrade: options.allow_downgrade,
            retry_failed: options.retry_failed,
            specialisation: options.specialisation,
            parallel: options.parallel,
            policy: Policy {
                canary: options.canary,
                batch: options.batch,
                max_failures: options.max_failures,
                ..Policy::default()
            },
            no_wait: options.no_wait,
            build: BuildSource::Inventory {
                build_host: options.build_host,
            },
            // An operator sees `busy` and decides.
            busy_wait: std::time::Duration::ZERO,
        },
        inventory,
        key,
        // A host that pulls is deployed through a channel, not by push.
        channel: None,
    };
    // Bad input stops here, before the hosts are asked anything.
    plan.preflight()?;
    let machine = plan.machine();
    for warning in warnings(
        &plan.inventory,
        &repository,
        &plan.rev,
        (key_file, &machine),
    ) {
        eprintln!("push: warning: {warning}");
    }
    let names: Vec<String> = plan
        .targets
        .iter()
        .map(|target| target.name.to_string())
        .collect();
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

/// What the operator should know before anything is built: uncommitted
/// changes (never deployed), and secret key files (the deploy key's
/// `key_file`, the cache signing key of `machine`) that git could take into
/// the Nix store. `push publish` says the same.
pub fn warnings(
    inventory: &Inventory,
    repository: &FlakeRepository,
    rev: &Revision,
    key_files: (Option<PathBuf>, &BuildMachine),
) -> Vec<String> {
    let (key_file, machine) = key_files;
    let mut key_files: Vec<(&str, PathBuf)> = key_file
        .map(|path| ("deploy key", path))
        .into_iter()
        .collect();
    key_files.extend(
        machine
            .sign_key_file
            .clone()
            .map(|path| ("cache signing key", path)),
    );
    let uncommitted = match repository.uncommitted_changes() {
        Ok(changes) => uncommitted_warning(&changes, rev),
        Err(error) => Some(format!(
            "cannot tell whether the work tree has uncommitted changes ({error:#}); deploying the committed revision {} only",
            &rev.as_str()[..12]
        )),
    };
    uncommitted
        .into_iter()
        .chain(exposure_warnings(inventory, &key_files))
        .collect()
}

/// The warning for a work tree with uncommitted changes (`changes`, as
/// [`FlakeRepository::uncommitted_changes`] lists them): the build uses
/// `rev`'s commit alone, never the work tree.
fn uncommitted_warning(changes: &[String], rev: &Revision) -> Option<String> {
    let first = changes.first()?;
    let count = match changes.len() {
        1 => "1 file".to_owned(),
        count => format!("{count} files"),
    };
    Some(format!(
        "the work tree has uncommitted changes ({count}, e.g. {first}); deploying the committed revision {} only",
        &rev.as_str()[..12]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `push`'s deploy options alone, as the command line parses them.
    #[derive(clap::Parser)]
    struct Push {
        #[command(flatten)]
        deploy: DeployOptions,
    }

    fn parse(args: &[&str]) -> Result<DeployOptions, clap::Error> {
        Push::try_parse_from(std::iter::once("push").chain(args.iter().copied()))
            .map(|push| push.deploy)
    }

    #[test]
    fn prepare_asks_for_the_prepare_action() {
        assert_eq!(parse(&[]).expect("parse").action(), Action::Switch);
        assert_eq!(
            parse(&["--prepare", "--all"]).expect("parse").action(),
            Action::Prepare
        );
        assert_eq!(
            parse(&["--action", "prepare"]).expect("parse").action(),
            Action::Prepare
        );
        assert_eq!(
            parse(&["--action", "boot"]).expect("parse").action(),
            Action::Boot
        );
    }

    #[test]
    fn prepare_goes_with_no_other_action_nor_confirm_nor_specialisation() {
        for other in [
            &["--action", "boot"][..],
            &["--confirm", "30"],
            &["--specialisation", "gpu"],
        ] {
            let args: Vec<&str> = ["--prepare"].iter().chain(other).copied().collect();
            let error = parse(&args).expect_err("refused");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
    }

    #[test]
    fn uncommitted_changes_are_counted_and_one_is_named() {
        let rev: Revision = "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("rev");
        assert_eq!(uncommitted_warning(&[], &rev), None);
        assert_eq!(
            uncommitted_warning(&["hosts/x.nix".into(), "push.toml".into()], &rev).as_deref(),
            Some("the work tree has uncommitted changes (2 files, e.g. hosts/x.nix); deploying the committed revision 0123456789ab only")
        );
        assert!(uncommitted_warning(&["a".into()], &rev)
            .expect("one")
            .contains("(1 file, e.g. a)"));
    }
}
