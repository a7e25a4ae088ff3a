//! `push`: the operator's command line. Parses arguments and hands each
//! subcommand its options; exit status as PRODUCT.md fixes it (0 every host
//! succeeded, 1 at least one failed, 2 bad usage, config or input).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod build;
mod build_user;
mod cache_check;
mod client;
mod confirm;
mod deploy;
mod flake;
mod follow;
mod install;
mod inventory;
mod keygen;
mod keys;
mod log;
mod narinfo;
mod nix;
mod outcome;
mod progress;
mod revision;
mod rollback;
mod rollout;
mod selection;
mod serve;
mod session;
mod sign;
mod status;
mod table;
#[cfg(test)]
mod test_git;
mod tls;

/// push: build, sign and send deploys to deployd hosts, and follow them.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    deploy: deploy::DeployOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Show every host's (or the selected hosts') revision, system, state
    /// and last deploy.
    Status(status::StatusOptions),
    /// Show a deploy's log, live while it runs.
    Log(log::LogOptions),
    /// Return hosts to their previous generation.
    Rollback(rollback::RollbackOptions),
    /// Make a deploy key pair in Nix's key-file format: NAME.secret (mode
    /// 0600) and NAME.public, in $XDG_CONFIG_HOME/deployd/keys (else
    /// ~/.config/deployd/keys) or --out DIR. Refuses to overwrite either file.
    Keygen(keygen::KeygenOptions),
    /// Install a new machine booted from a NixOS installer: build HOST's
    /// system at REV, get it into the machine's mounted root (pulled from
    /// the fleet's cache, or copied over SSH) and run nixos-install there.
    /// With --fetch-hardware-config, first write the machine's
    /// hardware-configuration.nix into the flake instead.
    Install(install::InstallOptions),
    /// Run the forge service: a push to a followed branch deploys its hosts,
    /// and each host's result is reported on the commit.
    Serve(serve::ServeOptions),
}

/// Exit status for bad usage, config or input.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keygen(options)) = &cli.command {
        return report(keygen::run(options).map(|()| ExitCode::SUCCESS));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(Err(error.into())),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => deploy::run(cli.deploy).await,
            Some(Command::Status(options)) => status::run(options).await,
            Some(Command::Log(options)) => log::run(options).await,
            Some(Command::Rollback(options)) => rollback::run(options).await,
            Some(Command::Serve(options)) => serve::run(options).await,
            Some(Command::Install(options)) => install::run(options).await,
            Some(Command::Keygen(_)) => unreachable!("handled above"),
        }
    });
    // A blocking task still running (a git fetch that stalls) does not keep
    // the process from ending.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report(result)
}

/// The exit status, printing the error (on one line, credentials masked)
/// when there is one.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            let error = inventory::one_line(&format!("{error:#}"));
            eprintln!(
                "push: {}",
                deployd_command::redact::mask_credentials(&error)
            );
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
