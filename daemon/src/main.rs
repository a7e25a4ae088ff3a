//! `deployd`: the host daemon. For now only its command line exists; the
//! daemon itself (verify, pull, switch, report) is built on `deployd-protocol`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// deployd: pull-based, signed deploys for NixOS hosts.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The daemon's config file.
    #[arg(long, default_value = "/etc/deployd/config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit.
    CheckConfig {
        /// The config file to check.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        Some(Command::CheckConfig { config }) => config,
        None => &cli.config,
    };
    eprintln!(
        "deployd {}: the daemon is not built yet; {} was not read",
        env!("CARGO_PKG_VERSION"),
        config.display()
    );
    ExitCode::from(2)
}
