//! `push install HOST --target root@ADDR [REV]`: a new machine's very first
//! generation, from the operator's machine. The machine is booted from a
//! NixOS installer with its root file system mounted at ROOT; push checks
//! it, reads HOST's deployd settings, builds HOST's system at REV as `push`
//! does, gets the closure into ROOT's store (pulled by the machine from the
//! fleet's cache, or copied over SSH: [`closure`]), and runs
//! `nixos-install` there. Nothing is written on the machine before every
//! check passed. The first boot runs deployd trusting the fleet's keys and
//! caches, so `push --host HOST` deploys to it at once.
//!
//! `push install HOST --fetch-hardware-config root@ADDR` comes first: it
//! writes the machine's `hardware-configuration.nix` into the flake
//! ([`hardware`]).
//!
//! Exit status: 0 installed, 1 the build, copy, install or wait failed,
//! 2 bad usage, config or input (every refusal before the build).

mod closure;
mod hardware;
mod settings;
mod target;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_protocol::{HostName, StorePath};

use crate::build::{build, BuildPlan};
use crate::client::Client;
use crate::inventory::{one_line, HostEntry, Inventory, INVENTORY_FILE};
use crate::revision::FlakeRepository;
use closure::{Choice, Delivery};
use target::{on_target, run_keeping_tail, InstallRoot, SshDestination};

/// Options of `push install`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("machine")
        .required(true)
        .args(["target", "fetch_hardware_config"])
))]
pub struct InstallOptions {
    /// The host to install: its name in push.toml and in the flake's
    /// nixosConfigurations.
    pub host: HostName,
    /// Install on this machine (booted from a NixOS installer, reachable
    /// over SSH as root, its root file system mounted at --root).
    #[arg(long, value_name = "root@ADDR")]
    pub target: Option<SshDestination>,
    /// Instead of installing: write this machine's hardware-configuration.nix
    /// into the flake (hosts/HOST/hardware-configuration.nix, or the host's
    /// hardware_config in push.toml), to review and commit.
    #[arg(
        long,
        value_name = "root@ADDR",
        conflicts_with_all = ["build_host", "copy", "wait", "rev"]
    )]
    pub fetch_hardware_config: Option<SshDestination>,
    /// Where the new machine's root file system is mounted on the installer.
    #[arg(long, value_name = "DIR", default_value = "/mnt")]
    pub root: InstallRoot,
    /// The flake's directory (push.toml in it or a parent: where it is
    /// found is the flake's root).
    #[arg(long, default_value = ".")]
    pub flake: PathBuf,
    /// Build on this machine over SSH (ssh-ng) instead of here; default:
    /// push.toml's build_host.
    #[arg(long, value_name = "HOST")]
    pub build_host: Option<String>,
    /// Copy the closure over SSH even when the new machine could pull it
    /// from one of its caches.
    #[arg(long)]
    pub copy: bool,
    /// After installing, wait until the machine has rebooted into its new
    /// system and its deployd answers.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "SECONDS", default_value_t = 900, requires = "wait")]
    pub wait_timeout: u64,
    /// The git revision to install (a commit, branch, tag or short hash).
    #[arg(default_value = "HEAD")]
    pub rev: String,
}

/// What `push install --help` says about its exit statuses.
pub const EXIT_HELP: &str = "Exit status: 0 installed (or the hardware configuration written); \
                             1 the machine cannot be reached, its system did not build, \
                             nixos-install failed or it did not come up running it; \
                             2 bad usage, config or input.";

/// Runs `push install`.
pub async fn run(options: InstallOptions) -> Result<ExitCode> {
    let inventory = Inventory::load(&options.flake)?;
    let entry = host_entry(&inventory, &options.host)?;
    if let Some(destination) = &options.fetch_hardware_config {
        let relative = hardware::relative_path(&options.host, entry)?;
        let path = inventory.root().join(relative);
        hardware::fetch(destination, &options.root, &options.host, &path).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(destination) = &options.target else {
        bail!("give --target root@ADDR to install, or --fetch-hardware-config root@ADDR");
    };
    install(&options, &inventory, destination).await
}

/// HOST's inventory entry: `push --host HOST` needs it once installed, so
/// it is needed first.
fn host_entry<'a>(inventory: &'a Inventory, host: &HostName) -> Result<&'a HostEntry> {
    inventory.hosts.get(host).with_context(|| {
        format!(
            "{host} is not in {INVENTORY_FILE}: add [hosts.{host}] (with its address) first, since push --host {host} needs it once installed"
        )
    })
}

async fn install(
    options: &InstallOptions,
    inventory: &Inventory,
    destination: &SshDestination,
) -> Result<ExitCode> {
    let (host, root, address) = (&options.host, &options.root, destination.address());
    // Every check first; nothing is written on the machine before they pass.
    let repository = FlakeRepository::open(inventory.root())?;
    let rev = repository.resolve(&options.rev)?;
    let flake = repository.flake_reference(&rev);
    let build_host = options
        .build_host
        .clone()
        .or(inventory.defaults.build_host.clone());
    if let Some(build_host) = &build_host {
        crate::nix::check_build_host(build_host).map_err(anyhow::Error::msg)?;
    }
    let sign_key_file = inventory
        .defaults
        .sign_key_file
        .as_ref()
        .map(|path| inventory.root().join(path));
    if let Some(path) = &sign_key_file {
        std::fs::File::open(path)
            .with_context(|| format!("cannot read the cache signing key {}", path.display()))?;
    }
    let deployd = inventory.target(host)?;
    let reader = if options.wait {
        Some(Client::new(crate::keys::reading_key(inventory)?))
    } else {
        None
    };
    check_target(destination, root).await?;
    let settings = settings::read(&flake, host).await?;

    eprintln!("push: building {host}'s system at {rev}");
    let hosts = [host.clone()];
    let plan = BuildPlan {
        flake: &flake,
        hosts: &hosts,
        build_host: build_host.as_deref(),
        copy_to: inventory.defaults.copy_to.as_deref(),
        sign_key_file: sign_key_file.as_deref(),
        build_user: None,
    };
    let system: StorePath = match build(&plan, |line| eprintln!("build: {line}")).await {
        Ok(mut built) => match built.systems.remove(host) {
            Some(system) => system,
            None => {
                let why = built.failed.remove(host).unwrap_or_default();
                return Ok(failed(format!("{host}'s system did not build: {why}")));
            }
        },
        Err(error) => return Ok(failed(format!("the build failed: {error:#}"))),
    };
    eprintln!("push: {host}'s system is {system}");

    let delivery = Delivery {
        destination,
        root,
        system: &system,
        substituters: &settings.substituters,
        trusted_public_keys: &settings.trusted_public_keys,
        build_host: build_host.as_deref(),
        way: if options.copy {
            Choice::Copy
        } else {
            Choice::PullWhenPossible
        },
    };
    if let Err(error) = closure::deliver(&delivery).await {
        return Ok(failed(format!("{error:#}")));
    }

    eprintln!("push: running nixos-install on {address} (--root {root})");
    let script = target::install_script(&system, root);
    let invocation = on_target(destination, &script, target::INSTALL_TIMEOUT);
    if let Err(failure) =
        run_keeping_tail(&invocation, |line| eprintln!("nixos-install: {line}")).await
    {
        return Ok(failed(format!(
            "nixos-install failed on {address}: {failure}"
        )));
    }
    eprintln!("push: {host} is installed on {address} ({system}), at revision {rev}");

    let Some(client) = reader else {
        eprintln!(
            "push: next: reboot {address} into its new system; then push --host {host} deploys to it"
        );
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "push: reboot {address} into its new system now (for example: ssh {destination} reboot)"
    );
    let timeout = Duration::from_secs(options.wait_timeout);
    match wait::until_running(&client, &deployd, &system, timeout).await {
        Ok(()) => {
            eprintln!("push: {host} runs its installed system: push --host {host} deploys to it");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => Ok(failed(why)),
    }
}

/// The read-only checks on the new machine, one SSH round trip.
async fn check_target(destination: &SshDestination, root: &InstallRoot) -> Result<()> {
    eprintln!("push: checking {destination} ({root} mounted, nixos-install and nix-store there)");
    let script = target::check_script(root);
    let invocation = on_target(destination, &script, target::CHECK_TIMEOUT);
    let checked = run_keeping_tail(&invocation, |_| {})
        .await
        .map_err(|failure| {
            crate::exit::HostProblem(format!(
                "cannot reach {destination} over SSH: {}",
                failure.last_line()
            ))
        })?;
    target::read_checks(&checked.stdout, destination, root).map_err(anyhow::Error::msg)
}

/// Prints why the install failed (one line) and gives exit status 1.
fn failed(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("push: {}", one_line(&why.to_string()));
    ExitCode::from(1)
}
