//! `push`: the operator's command line. Parses arguments and hands each
//! subcommand its options; the exit status is the same for every
//! subcommand (see [`exit`]): 0 every host succeeded, 1 at least one host
//! failed or was unreachable, 2 bad usage, config or input.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod agent;
mod batches;
mod build;
mod build_user;
mod cache_check;
mod client;
mod completions;
mod confirm;
mod deploy;
mod exit;
mod flake;
mod follow;
mod host_error;
mod install;
mod inventory;
mod keygen;
mod keys;
mod log;
mod man;
mod narinfo;
mod nix;
mod outcome;
mod plan;
mod progress;
mod publish;
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
#[command(
    name = "push",
    version,
    args_conflicts_with_subcommands = true,
    after_help = exit::HELP
)]
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
    #[command(after_help = status::EXIT_HELP)]
    Status(status::StatusOptions),
    /// Show what deploying REV would change on each host, changing
    /// nothing: the paths it lacks and their size, the packages that change
    /// (as nvd shows them), whether a reboot is needed and whether a switch
    /// would be refused. Builds as push does.
    #[command(after_help = plan::EXIT_HELP)]
    Plan(plan::PlanOptions),
    /// Show a deploy's log, live while it runs.
    #[command(after_help = exit::HELP)]
    Log(log::LogOptions),
    /// Return hosts to their previous generation.
    #[command(after_help = exit::HELP)]
    Rollback(rollback::RollbackOptions),
    /// Make a deploy key pair in Nix's key-file format: NAME.secret (mode
    /// 0600) and NAME.public, in $XDG_CONFIG_HOME/deployd/keys (else
    /// ~/.config/deployd/keys) or --out DIR. Refuses to overwrite either file.
    #[command(after_help = keygen::EXIT_HELP)]
    Keygen(keygen::KeygenOptions),
    /// Install a new machine booted from a NixOS installer: build HOST's
    /// system at REV, get it into the machine's mounted root (pulled from
    /// the fleet's cache, or copied over SSH) and run nixos-install there.
    /// With --fetch-hardware-config, first write the machine's
    /// hardware-configuration.nix into the flake instead.
    #[command(after_help = install::EXIT_HELP)]
    Install(install::InstallOptions),
    /// Publish the desired state of hosts that pull it (`pull = true`):
    /// build each host's system at REV as push does, sign a state one
    /// sequence above the one the channel holds, and write it there as
    /// hosts/HOST.json (a folder, an S3 bucket, or push serve's channel).
    #[command(after_help = publish::EXIT_HELP)]
    Publish(publish::PublishOptions),
    /// Run the forge service: a push to a followed branch deploys its hosts,
    /// and each host's result is reported on the commit.
    #[command(after_help = serve::EXIT_HELP)]
    Serve(serve::ServeOptions),
    /// Print the shell completion script for push (bash, zsh, fish, elvish
    /// or powershell) to stdout.
    #[command(after_help = "Exit status: 0 printed; 2 bad usage.")]
    Completions(completions::CompletionsOptions),
    /// Write push's manual pages (push.1, push-status.1, ...) into a
    /// directory, for packagers.
    #[command(
        after_help = "Exit status: 0 written; 2 bad usage or a directory that cannot be written."
    )]
    Man(man::ManOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Keygen(options)) => {
            return report(keygen::run(options).map(|()| ExitCode::SUCCESS))
        }
        Some(Command::Completions(options)) => {
            completions::write(options.shell, &mut Cli::command(), &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Man(options)) => {
            return report(man::run(options, Cli::command()).map(|()| ExitCode::SUCCESS))
        }
        _ => {}
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
            Some(Command::Plan(options)) => plan::run(options).await,
            Some(Command::Log(options)) => log::run(options).await,
            Some(Command::Rollback(options)) => rollback::run(options).await,
            Some(Command::Serve(options)) => serve::run(options).await,
            Some(Command::Publish(options)) => publish::run(options).await,
            Some(Command::Install(options)) => install::run(options).await,
            Some(Command::Keygen(_) | Command::Completions(_) | Command::Man(_)) => {
                unreachable!("handled above")
            }
        }
    });
    // A blocking task still running (a git fetch that stalls) does not keep
    // the process from ending.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report(result)
}

/// The exit status, printing the error (on one line, credentials masked)
/// when there is one: 1 for a host's trouble, 2 for bad input.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            let line = inventory::one_line(&exit::describe(&error));
            eprintln!("push: {}", deployd_command::redact::mask_credentials(&line));
            ExitCode::from(exit::status_of(&error))
        }
    }
}
