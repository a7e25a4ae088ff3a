//! Building every host's system at one revision, keeping GC roots for what
//! was built, and making sure the hosts' cache has it: locally, or on the
//! build host over SSH (`ssh-ng://`), as `nixos-rebuild --build-host` does.
//! For `push serve`, the evaluation and the local build run as its build
//! user ([`BuildUser`]); the GC roots and the copy (which may sign) are the
//! service's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deployd_command::{self as command, Invocation};
use deployd_protocol::{HostName, StorePath};

use crate::build_user::BuildUser;
use crate::nix;

/// The build machine's settings: where to build, where the closures go and
/// how they are signed, and who evaluates.
#[derive(Debug, Clone, Default)]
pub struct BuildMachine {
    /// Build there over SSH instead of here.
    pub build_host: Option<String>,
    /// Copy the closures to this store afterwards.
    pub copy_to: Option<String>,
    /// Sign them with this key while copying.
    pub sign_key_file: Option<PathBuf>,
    /// Evaluate and build here as this user (`push serve`); `None`: as
    /// whoever runs push.
    pub build_user: Option<Arc<BuildUser>>,
}

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
    /// Evaluate and build here as this user instead of as whoever runs push.
    pub build_user: Option<&'a BuildUser>,
}

impl BuildPlan<'_> {
    /// `invocation` as the build user runs it, if there is one.
    fn as_build_user(&self, invocation: Invocation) -> Invocation {
        match self.build_user {
            Some(user) => user.wrap(&invocation),
            None => invocation,
        }
    }
}

#[derive(serde::Deserialize)]
struct Evaluated {
    drv: String,
    out: String,
}

/// What one evaluation told: the systems of the hosts the flake has, and
/// the names of all its configurations (to name a host it lacks).
#[derive(serde::Deserialize)]
struct Evaluation {
    names: Vec<String>,
    systems: BTreeMap<String, Evaluated>,
}

/// Why a host has no system: the flake has no configuration of its name.
fn missing(host: &HostName, names: &[String]) -> String {
    let has = if names.is_empty() {
        "it has none".to_owned()
    } else {
        format!("it has: {}", names.join(", "))
    };
    format!("the flake has no nixosConfigurations.{host} ({has})")
}

/// What a build made: each host's system, and why the others have none.
#[derive(Debug, Default)]
pub struct Built {
    /// The hosts whose system was built (and copied where asked).
    pub systems: BTreeMap<HostName, StorePath>,
    /// The hosts whose system failed to evaluate or build, and why.
    pub failed: BTreeMap<HostName, String>,
}

/// Builds every host's system. All hosts go in one evaluation and one
/// build; when that fails, each host is tried alone, so that one host's
/// broken system is reported for that host and the others still deploy.
/// A host the flake has no configuration for is one of `failed`, named so.
/// `Err` only when nothing could be built for any host and why is not one
/// host's own.
pub async fn build(plan: &BuildPlan<'_>, report: impl Fn(&str)) -> Result<Built> {
    if let Some(user) = plan.build_user {
        user.check().await?;
    }
    report("evaluating");
    let mut built = Built::default();
    let mut derivations = Vec::new();
    for (host, evaluated) in evaluate(plan, &mut built.failed).await? {
        let drv: StorePath = evaluated
            .drv
            .parse()
            .with_context(|| format!("nix eval gave {host} a bad derivation path"))?;
        let out: StorePath = evaluated.out.parse()?;
        derivations.push((host, drv, out));
    }
    if derivations.is_empty() && !built.failed.is_empty() {
        // Every host failed on its own (no configuration, say): each says why.
        return Ok(built);
    }
    if let Err(error) = build_derivations(plan, &derivations, &report).await {
        if derivations.len() < 2 {
            for (host, _, _) in &derivations {
                built.failed.insert(host.clone(), format!("{error:#}"));
            }
            derivations.clear();
        } else {
            report("the build failed; building each host alone to tell which failed");
            let mut alone = Vec::new();
            for one in derivations {
                match build_derivations(plan, std::slice::from_ref(&one), &report).await {
                    Ok(()) => alone.push(one),
                    Err(error) => {
                        built.failed.insert(one.0.clone(), format!("{error:#}"));
                    }
                }
            }
            derivations = alone;
        }
    }
    if derivations.is_empty() {
        let reasons: Vec<String> = built
            .failed
            .iter()
            .map(|(host, why)| format!("{host}: {why}"))
            .collect();
        bail!("no system could be built: {}", reasons.join("; "));
    }
    if let Some(copy_to) = plan.copy_to {
        report(&format!("copying to {copy_to}"));
        let paths: Vec<String> = derivations
            .iter()
            .map(|(_, _, out)| out.to_string())
            .collect();
        command::run(
            &nix::copy_closures(copy_to, plan.sign_key_file, plan.build_host, &paths),
            |line| report(line),
        )
        .await
        .with_context(|| format!("copying the closures to {copy_to}"))?;
    }
    built.systems = derivations
        .into_iter()
        .map(|(host, _, out)| (host, out))
        .collect();
    Ok(built)
}

/// Every host's derivation and output; when the one evaluation of all of
/// them fails, each host alone, its failure put in `failed`.
async fn evaluate(
    plan: &BuildPlan<'_>,
    failed: &mut BTreeMap<HostName, String>,
) -> Result<Vec<(HostName, Evaluated)>> {
    let all = evaluate_hosts(plan, plan.hosts).await;
    let mut evaluated = match all {
        Ok(evaluated) => evaluated,
        Err(error) if plan.hosts.len() < 2 => return Err(error),
        Err(_) => {
            let mut each = Evaluation {
                names: Vec::new(),
                systems: BTreeMap::new(),
            };
            for host in plan.hosts {
                match evaluate_hosts(plan, std::slice::from_ref(host)).await {
                    Ok(one) => {
                        each.names = one.names;
                        each.systems.extend(one.systems);
                    }
                    Err(error) => {
                        failed.insert(host.clone(), format!("{error:#}"));
                    }
                }
            }
            each
        }
    };
    let mut systems = Vec::new();
    for host in plan.hosts {
        if failed.contains_key(host) {
            continue;
        }
        match evaluated.systems.remove(host.as_str()) {
            Some(system) => systems.push((host.clone(), system)),
            None => {
                failed.insert(host.clone(), missing(host, &evaluated.names));
            }
        }
    }
    Ok(systems)
}

async fn evaluate_hosts(plan: &BuildPlan<'_>, hosts: &[HostName]) -> Result<Evaluation> {
    let evaluate = plan.as_build_user(nix::evaluate_systems(plan.flake, hosts));
    let evaluated = command::run(&evaluate, |_| {})
        .await
        .map_err(nix::abbreviate_apply)
        .context("evaluating the systems")?;
    serde_json::from_str(&evaluated.stdout).context("reading nix eval's JSON")
}

/// Builds `derivations` here or on the build host, with a GC root for each
/// host's system where it was built.
async fn build_derivations(
    plan: &BuildPlan<'_>,
    derivations: &[(HostName, StorePath, StorePath)],
    report: &impl Fn(&str),
) -> Result<()> {
    let drvs: Vec<String> = derivations
        .iter()
        .map(|(_, drv, _)| drv.to_string())
        .collect();
    match plan.build_host {
        None => {
            report("building");
            let realise = plan.as_build_user(nix::realise(&drvs));
            command::run(&realise, |line| report(line))
                .await
                .context("building")?;
            // Kept by push itself (push serve: the service, not its build user).
            for (host, _, system) in derivations {
                let root = local_root(host)?;
                if keeps_already(&root, system) {
                    continue;
                }
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
            let builds: Vec<(HostName, StorePath)> = derivations
                .iter()
                .map(|(host, drv, _)| (host.clone(), drv.clone()))
                .collect();
            let script = nix::remote_build_script(&builds);
            command::run(&nix::on_build_host(build_host, &script), |line| {
                report(line)
            })
            .await
            .with_context(|| format!("building on {build_host}"))?;
        }
    }
    Ok(())
}

/// The local GC root of `host`'s last built system:
/// `$XDG_STATE_HOME/deployd/gc-roots/<host>` (or `~/.local/state/...`).
/// Whether the GC root at `root` already keeps `system`: a push of the
/// same revision again (or of hosts whose system did not change) then runs
/// no `nix-store` for them, one process per host less. The link is one Nix
/// made with `--add-root`, which registered it as an indirect root when it
/// made it; a link pointing elsewhere, or none, is made anew.
fn keeps_already(root: &Path, system: &StorePath) -> bool {
    std::fs::read_link(root).is_ok_and(|target| target == Path::new(system.as_str()))
}

fn local_root(host: &HostName) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set")?;
    let dir = base.join("deployd/gc-roots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(host.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_kept_already_only_when_it_points_at_the_system() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let system: StorePath = "/nix/store/00000000000000000000000000000000-nixos-system-a"
            .parse()
            .expect("store path");
        let other: StorePath = "/nix/store/11111111111111111111111111111111-nixos-system-a"
            .parse()
            .expect("store path");
        let root = dir.path().join("sambirano");
        assert!(!keeps_already(&root, &system), "no root yet");
        std::os::unix::fs::symlink(other.as_str(), &root).expect("symlink");
        assert!(!keeps_already(&root, &system), "a root of another system");
        std::fs::remove_file(&root).expect("remove");
        std::os::unix::fs::symlink(system.as_str(), &root).expect("symlink");
        assert!(keeps_already(&root, &system));
    }
}
