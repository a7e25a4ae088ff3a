//! `push log --host H [DEPLOY_ID]` (or `--flake DIR#H`): a deploy's log
//! (the running one, else the last), live while it runs. A host that cannot
//! be reached, has no deploy yet or refuses is exit 1 (see [`crate::exit`]),
//! bad usage 2.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use deployd_protocol::{DeployId, HostName};

use crate::client::{Client, HostError};
use crate::exit::HostProblem;
use crate::flake::FlakeArg;
use crate::follow::{follow, Update};
use crate::inventory::Inventory;

/// Options of `push log`.
#[derive(Debug, clap::Args)]
pub struct LogOptions {
    /// The host (or the one of `--flake DIR#HOST`).
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<HostName>,
    /// The flake's directory (push.toml in it or a parent), or DIR#HOST.
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
    /// The deploy (default: the running one, else the last).
    pub deploy_id: Option<DeployId>,
}

/// The one host `--host` or `--flake DIR#HOST` names.
fn one_host(options: &LogOptions) -> Result<HostName> {
    match (&options.host, &options.flake.host) {
        (Some(named), Some(in_flake)) if named != in_flake => {
            bail!("--host {named} and --flake ...#{in_flake} name two hosts: push log shows one")
        }
        (Some(host), _) | (None, Some(host)) => Ok(host.clone()),
        (None, None) => bail!("push log needs a host: --host HOST, or --flake DIR#HOST"),
    }
}

/// Runs `push log`.
pub async fn run(options: LogOptions) -> Result<ExitCode> {
    let host = one_host(&options)?;
    let inventory = Inventory::load(&options.flake.dir)?;
    let target = inventory.target(&host)?;
    let client = Client::new(crate::keys::reading_key(&inventory)?);
    let id = match options.deploy_id {
        Some(id) => id,
        None => {
            let status = match client.status(&target).await {
                Err(HostError::Unreachable(why)) => return Ok(unreachable(&target, &why)),
                answer => {
                    answer.with_context(|| format!("asking {} for its deploys", target.name))?
                }
            };
            match status.active_deploy.or(status.last_deploy) {
                Some(deploy) => deploy.deploy_id,
                None => {
                    return Err(HostProblem(format!("{} has no deploy yet", target.name)).into())
                }
            }
        }
    };
    // Which deployd, and whether over TLS: the URL's scheme says.
    eprintln!("push: deploy {id} on {} ({})", target.name, target.url);
    let followed = follow(&client, &target, id.as_str(), |update| match update {
        Update::State(state) => println!("== {state}"),
        Update::Log(line) => println!("{}", crate::progress::printable(&line)),
        Update::Reconnecting(why) => eprintln!("push: reconnecting ({why})"),
    })
    .await;
    let record = match followed {
        Err(HostError::Unreachable(why)) => return Ok(unreachable(&target, &why)),
        answer => answer.with_context(|| format!("reading deploy {id} on {}", target.name))?,
    };
    if let Some(error) = &record.error {
        let reason = crate::progress::printable(&format!("{}: {}", error.code, error.message));
        println!("== {}: {reason}", record.state);
    }
    Ok(ExitCode::SUCCESS)
}

/// An unreachable host is exit 1, never 2 (it is no bad input): one line.
fn unreachable(
    target: &crate::inventory::Target,
    why: &crate::host_error::Unreachable,
) -> ExitCode {
    eprintln!("push: {} is unreachable: {why}", target.name);
    ExitCode::from(crate::exit::HOST_FAILED)
}
