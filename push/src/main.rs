//! `push`: the operator's command line. Parses arguments and hands each
//! subcommand its options; exit status as PRODUCT.md fixes it (0 success,
//! 1 a host failed, 2 bad usage, config or input).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod keygen;

/// push: build, sign and send deploys to deployd hosts.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a deploy key pair in Nix's key-file format: NAME.secret (mode
    /// 0600) and NAME.public. Refuses to overwrite either file.
    Keygen(keygen::KeygenOptions),
}

/// Exit status for bad usage, config or input.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(options) => keygen::run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("push: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
