//! The five ways to get one already-built system onto every host, each from
//! its start to every host switched:
//!
//! - **limit**: every host at once fetches its closure from the cache with
//!   `nix copy --from` (its own store, the cache's signatures checked by its
//!   `nix.conf`), sets its system profile and switches: what any pull-based
//!   deploy costs at least;
//! - **deployd**: `push --all REV` from the operator's side, every host's
//!   deployd pulling from the cache (push still evaluates and runs its no-op
//!   build: part of its cost);
//! - **ssh-parallel**, colmena's way: from the builder, `nix-copy-closure
//!   --to root@HOST` then the profile and the switch over SSH, ten hosts at a
//!   time (colmena's default);
//! - **ssh-sequential**, `nixos-rebuild --target-host`'s way: the same, one
//!   host after another;
//! - **pull**, hosts nobody calls (docs/src/design/channels.md): `push
//!   publish --channel file:///… --all REV` writes every host's desired
//!   state into a folder the cache server serves, and every host's deployd,
//!   polling it every `--pull-interval-s`, finds it, fetches and switches.
//!   Its time is the publish, the wait for each host's next poll (up to 1.2
//!   times the interval) and the fetch and switch (the limit's).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deployd_lab::run::{run_labelled, run_within, stderr_tail};
use deployd_lab::{Node, SshAccess, SYSTEM_PROFILE};

use super::fleet::BenchFleet;

/// How many hosts colmena deploys at a time by default.
const COLMENA_PARALLEL: usize = 10;
/// Longest any one way may take, for every host.
const WAY_TIMEOUT: Duration = Duration::from_secs(3600);

/// A way to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Way {
    /// Every host `nix copy --from` the cache at once, then switches.
    Limit,
    /// `push --all`, every host's deployd pulling.
    Deployd,
    /// `nix-copy-closure` and switch over SSH, ten hosts at a time.
    SshParallel,
    /// `nix-copy-closure` and switch over SSH, host after host.
    SshSequential,
    /// `push publish` to a static channel, every host's deployd polling it.
    Pull,
}

impl Way {
    /// Whether this way reaches the hosts over SSH.
    pub fn needs_ssh(self) -> bool {
        matches!(self, Way::SshParallel | Way::SshSequential)
    }
}

impl fmt::Display for Way {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that widths in format strings apply.
        formatter.pad(match self {
            Way::Limit => "limit",
            Way::Deployd => "deployd",
            Way::SshParallel => "ssh-parallel",
            Way::SshSequential => "ssh-sequential",
            Way::Pull => "pull",
        })
    }
}

/// What a timed deploy tells besides its time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deployed {
    /// How long `push publish` took (the pull way's first step).
    pub published_in: Option<Duration>,
}

/// Deploys the fleet's systems to every host the way `way` does; returns
/// once every host has switched.
pub fn deploy(way: Way, fleet: &BenchFleet) -> Result<Deployed> {
    match way {
        Way::Limit => limit(fleet),
        Way::Deployd => push_all(fleet),
        Way::SshParallel => over_ssh(fleet, COLMENA_PARALLEL),
        Way::SshSequential => over_ssh(fleet, 1),
        Way::Pull => return publish_and_wait(fleet),
    }
    .map(|()| Deployed::default())
}

/// `push publish --all REV` to the fleet's channel (push.toml marks every
/// host `pull = true` for this way), then waits until every host has
/// switched ([`BenchFleet::wait_until_switched`]).
fn publish_and_wait(fleet: &BenchFleet) -> Result<Deployed> {
    let started = Instant::now();
    let mut publish = fleet.push_command()?;
    publish.args(["publish", "--channel", &fleet.channel_url(), "--all"]);
    publish.arg(fleet.rev());
    let output = deployd_lab::run::output_within(&mut publish, WAY_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "push publish --all exited with {}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            stderr_tail(&output)
        );
    }
    let published_in = started.elapsed();
    fleet.wait_until_switched(WAY_TIMEOUT)?;
    Ok(Deployed {
        published_in: Some(published_in),
    })
}

/// The profile and the switch, as a shell script run on the host.
fn activation_script(system: &str) -> String {
    format!(
        "nix-env -p {SYSTEM_PROFILE} --set {system} && {system}/bin/switch-to-configuration switch"
    )
}

/// Every host at once, inside its own namespaces: fetch, profile, switch.
fn limit(fleet: &BenchFleet) -> Result<()> {
    let cache = fleet.lab().cache_url();
    let hosts = fleet.lab().hosts();
    std::thread::scope(|scope| {
        let runs: Vec<_> = hosts
            .iter()
            .map(|host| {
                let system = fleet.system(&host.name)?;
                let script = format!(
                    "nix copy --extra-experimental-features nix-command --from {cache} {system} && {}",
                    activation_script(system)
                );
                Ok(scope.spawn(move || run_on(host, &["/bin/sh", "-c", &script])))
            })
            .collect::<Result<_>>()?;
        for run in runs {
            run.join()
                .map_err(|_| anyhow::anyhow!("a host's thread panicked"))??;
        }
        Ok(())
    })
}

/// `push --all REV` from the operator's side; every host must succeed.
fn push_all(fleet: &BenchFleet) -> Result<()> {
    let mut push = fleet.push_command()?;
    push.args(["--all", fleet.rev()]);
    let output = deployd_lab::run::output_within(&mut push, WAY_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "push --all exited with {}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            stderr_tail(&output)
        );
    }
    Ok(())
}

/// From the builder over SSH, `parallel` hosts at a time: copy the closure,
/// then set the profile and switch.
fn over_ssh(fleet: &BenchFleet, parallel: usize) -> Result<()> {
    let queue: Mutex<Vec<&Node>> = Mutex::new(fleet.lab().hosts().iter().rev().collect());
    let next = || queue.lock().map(|mut hosts| hosts.pop()).unwrap_or(None);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(host) = next() {
                        copy_and_switch(fleet, host)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(())
    })
}

/// One host over SSH, as colmena and `nixos-rebuild --target-host` do it.
fn copy_and_switch(fleet: &BenchFleet, host: &Node) -> Result<()> {
    let system = fleet.system(&host.name)?;
    let access: &SshAccess = fleet.ssh(&host.name)?;
    let builder = fleet.lab().builder();
    let mut copy = builder.command("nix-copy-closure", ["--to", &access.destination, system]);
    copy.env("NIX_SSHOPTS", &access.nix_sshopts);
    run_within(&mut copy, WAY_TIMEOUT)
        .with_context(|| format!("copying the closure to {}", host.name))?;
    let mut switch = builder.command("ssh", access.ssh_args(&activation_script(system)));
    run_within(&mut switch, WAY_TIMEOUT).with_context(|| format!("switching {}", host.name))?;
    Ok(())
}

/// Runs `argv` on `host`, failing unless it exits 0.
fn run_on(host: &Node, argv: &[&str]) -> Result<()> {
    let (program, args) = argv.split_first().context("an empty command")?;
    let label = format!("`{}` on {}", argv.join(" "), host.name);
    run_labelled(&mut host.command(program, args), &label, WAY_TIMEOUT)?;
    Ok(())
}

/// The ways in round `round` (from 0): the same ways, rotated, so that no
/// way always runs first, after the same one, or last.
pub fn order(ways: &[Way], round: usize) -> Vec<Way> {
    let mut order = ways.to_vec();
    if !order.is_empty() {
        let shift = round % order.len();
        order.rotate_left(shift);
    }
    order
}

/// The distinct ways asked for, in the order given.
pub fn distinct(ways: &[Way]) -> Vec<Way> {
    let mut seen = BTreeSet::new();
    ways.iter()
        .filter(|way| seen.insert(**way))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_the_ways() {
        let ways = [Way::Limit, Way::Deployd, Way::SshParallel];
        assert_eq!(order(&ways, 0), ways);
        assert_eq!(
            order(&ways, 1),
            [Way::Deployd, Way::SshParallel, Way::Limit]
        );
        assert_eq!(order(&ways, 3), ways);
    }

    #[test]
    fn a_way_asked_twice_runs_once() {
        assert_eq!(
            distinct(&[Way::Deployd, Way::Limit, Way::Deployd]),
            [Way::Deployd, Way::Limit]
        );
    }

    #[test]
    fn the_activation_is_the_profile_then_the_switch() {
        assert_eq!(
            activation_script("/nix/store/x-nixos-system-a"),
            "nix-env -p /nix/var/nix/profiles/system --set /nix/store/x-nixos-system-a \
             && /nix/store/x-nixos-system-a/bin/switch-to-configuration switch"
        );
    }
}
