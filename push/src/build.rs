//! Building every host's system at one revision, keeping GC roots for what
//! was built, and making sure the hosts' cache has it: locally, or on the
//! build host over SSH (`ssh-ng://`), as `nixos-rebuild --build-host` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use deployd::command;
use deployd_protocol::{HostName, StorePath};

use crate::nix;

/// Where and how to build.
pub struct BuildPlan<'a> {
    /// The flake reference of exactly the revision.
    pub flake: &'a str,
    /// The hosts to build for.
    pub hosts: &'a [HostName],
    /// Build there over SSH instead of here.
    pub build_host: Option<&'a str>,
    /// Copy the closures to this store afterwards.
    pub copy_to: Option<&'a str>,
    /// Sign them with this key while copying.
    pub sign_key_file: Option<&'a Path>,
}

#[derive(serde::Deserialize)]
struct Evaluated {
    drv: String,
    out: String,
}

/// Builds every host's system; returns each host's system path.
pub async fn build(
    plan: &BuildPlan<'_>,
    report: impl Fn(&str),
) -> Result<BTreeMap<HostName, StorePath>> {
    report("evaluating");
    let evaluated = command::run(&nix::evaluate_systems(plan.flake, plan.hosts), |_| {})
        .await
        .context("evaluating the systems")?;
    let evaluated: BTreeMap<String, Evaluated> =
        serde_json::from_str(&evaluated.stdout).context("reading nix eval's JSON")?;
    let mut derivations = Vec::new();
    let mut systems = BTreeMap::new();
    for host in plan.hosts {
        let Some(system) = evaluated.get(host.as_str()) else {
            bail!("the flake has no nixosConfigurations.{host}");
        };
        let drv: StorePath = system
            .drv
            .parse()
            .with_context(|| format!("nix eval gave {host} a bad derivation path"))?;
        derivations.push((host.clone(), drv));
        systems.insert(host.clone(), system.out.parse::<StorePath>()?);
    }
    let drvs: Vec<String> = derivations.iter().map(|(_, drv)| drv.to_string()).collect();
    match plan.build_host {
        None => {
            report("building");
            command::run(&nix::realise(&drvs), |line| report(line))
                .await
                .context("building")?;
            for (host, system) in &systems {
                let root = local_root(host)?;
                command::run(&nix::add_root(system.as_str(), &root), |_| {})
                    .await
                    .context("keeping a GC root")?;
            }
        }
        Some(build_host) => {
            nix::check_build_host(build_host).map_err(anyhow::Error::msg)?;
            report(&format!("copying derivations to {build_host}"));
            command::run(&nix::copy_derivations(build_host, &drvs), |line| {
                report(line)
            })
            .await
            .context("copying the derivations to the build host")?;
            report(&format!("building on {build_host}"));
            let script = nix::remote_build_script(&derivations);
            command::run(&nix::on_build_host(build_host, &script), |line| {
                report(line)
            })
            .await
            .with_context(|| format!("building on {build_host}"))?;
        }
    }
    if let Some(copy_to) = plan.copy_to {
        report(&format!("copying to {copy_to}"));
        let paths: Vec<String> = systems.values().map(ToString::to_string).collect();
        command::run(
            &nix::copy_closures(copy_to, plan.sign_key_file, plan.build_host, &paths),
            |line| report(line),
        )
        .await
        .with_context(|| format!("copying the closures to {copy_to}"))?;
    }
    Ok(systems)
}

/// The local GC root of `host`'s last built system:
/// `$XDG_STATE_HOME/deployd/gc-roots/<host>` (or `~/.local/state/...`).
fn local_root(host: &HostName) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set")?;
    let dir = base.join("deployd/gc-roots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(host.as_str()))
}
