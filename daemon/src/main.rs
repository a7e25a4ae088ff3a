//! `deployd`: parse, load, bind, serve. `deployd check-config --config FILE`
//! validates a config and exits (the NixOS module runs it at build time).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deployd::api::chain;
use deployd::daemon::reload;
use deployd::{api, Config};
use deployd_command::redact::mask_credentials;
use deployd_service::{cancel_on_signal, logging, notify};

/// deployd: pull-based, signed deploys for NixOS hosts.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The config file.
    #[arg(long, default_value = "/etc/deployd/config.toml", global = true)]
    config: PathBuf,
    /// Log debug messages too.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file and exit: 0 when it is valid.
    CheckConfig {
        /// Only check that key files are absolute paths, without reading
        /// them (at build time, where runtime secrets do not exist).
        #[arg(long)]
        skip_key_files: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let key_files = match cli.command {
        Some(Command::CheckConfig {
            skip_key_files: true,
        }) => deployd::config::KeyFiles::PathsOnly,
        _ => deployd::config::KeyFiles::Read,
    };
    let config = match Config::load_with(&cli.config, key_files) {
        Ok(config) => config,
        Err(error) => {
            // Masked: the TOML parser quotes the line it stopped at.
            eprintln!("deployd: {}", mask_credentials(&chain(&error)));
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig { .. }) = cli.command {
        // One entry, one key (Nix-format or SSH) or SSH CA: the entries count
        // them all, also the key files that --skip-key-files left unread.
        eprintln!(
            "deployd: {} is valid (host {}, {} trusted keys)",
            cli.config.display(),
            config.hostname,
            config.file.trusted_keys.len()
        );
        return ExitCode::SUCCESS;
    }
    logging::init("deployd", cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deployd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let listen = config.file.listen;
    // Bind first: a daemon that cannot listen must not resume an unfinished
    // deploy only to die in the middle of one of its steps.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let environment = deployd::Environment::detect(&config).await;
    let daemon = deployd::start(config, environment)
        .await
        .map_err(|error| chain(&error))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    let scheme = if daemon.tls().is_some() {
        "https"
    } else {
        "http"
    };
    log::info!(
        "deployd {} ({scheme}) listening on {bound}",
        env!("CARGO_PKG_VERSION")
    );
    let shutdown = daemon.lifecycle.shutdown_token();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(reload::reload_on_hangup(daemon.clone(), shutdown.clone()));
    tokio::spawn(reload::follow_running_system(
        daemon.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(deployd::pull::run(daemon.clone(), shutdown.clone()));
    tokio::spawn(deployd::pipeline::prepared::release_on_a_timer(
        daemon.clone(),
        shutdown.clone(),
    ));
    if let Some(interval) = notify::watchdog_interval() {
        tokio::spawn(notify::keep_watchdog_fed(interval, shutdown.clone()));
    }
    notify::ready();
    api::serve(listener, daemon, shutdown)
        .await
        .map_err(|error| format!("serving failed: {error}"))?;
    log::info!("deployd stopped");
    Ok(())
}
