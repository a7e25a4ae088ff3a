//! `lab`: make, use and remove a deployd lab by hand.
//!
//! `lab up`, `lab status`, `lab exec HOST -- CMD...`, `lab down`, `lab demo`,
//! `lab bench-fanout`; `lab supervise` and `lab serve-cache` are what the lab
//! runs inside its nodes.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use deployd_lab::http::{serve, Pace};
use deployd_lab::supervise::{supervise, SuperviseOptions};
use deployd_lab::tls::ServerIdentity;
use deployd_lab::{is_root, Lab, LabOptions};

mod bench;
mod demo;

/// The deployd lab: toy NixOS hosts in network namespaces, with real Nix.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The lab's directory (its state, stores, cache and flake).
    #[arg(long, global = true, default_value = "/tmp/deployd-lab")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a lab: a builder serving a signed binary cache, and hosts.
    Up {
        /// How many hosts.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Hosts without systemd as PID 1 (deployd then runs under `lab
        /// supervise`, as on a machine where systemd is not PID 1).
        #[arg(long)]
        no_systemd: bool,
    },
    /// Remove the lab and everything it made.
    Down,
    /// Run a command on a host (or on `builder`), inside its namespaces.
    Exec {
        /// The host's name.
        host: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show the lab's nodes and what each runs.
    Status,
    /// Make a lab and show deploys on it.
    Demo {
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// Make the first revision fail to build (to test that the demo
        /// fails when things do not go as planned).
        #[arg(long, hide = true)]
        fail_first_build: bool,
    },
    /// Measure deploying one built system to every host four ways (the
    /// limit, deployd, SSH in parallel as colmena does, SSH host after host
    /// as nixos-rebuild --target-host does): wall and CPU time, medians of
    /// interleaved rounds, ratios to the limit.
    BenchFanout(bench::BenchOptions),
    /// Format Nix files with alejandra, or with --check only say which are
    /// not formatted (exit 1).
    FormatNix {
        /// Only check.
        #[arg(long)]
        check: bool,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a program for ever, restarting it when it exits (used inside nodes).
    #[command(hide = true)]
    Supervise(SuperviseOptions),
    /// Serve a directory over HTTP (the builder's binary cache).
    #[command(hide = true)]
    ServeCache {
        /// The directory to serve.
        #[arg(long)]
        root: PathBuf,
        /// The address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Slow bodies down to this many bytes per second.
        #[arg(long)]
        bytes_per_second: Option<u64>,
        /// Answer every request this many milliseconds late.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Cut the first this many answers for NAR files after half their
        /// body (the connection closed).
        #[arg(long, default_value_t = 0)]
        cut_first_nars: u32,
        /// Serve HTTPS with this certificate (PEM; with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_certificate: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_certificate")]
        tls_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lab: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let needs_root = !matches!(
        cli.command,
        Command::Supervise(_) | Command::ServeCache { .. }
    );
    if needs_root && !is_root() {
        bail!("the lab makes network namespaces and mounts: run it as root");
    }
    let lab_binary = std::env::current_exe().context("finding the lab binary")?;
    match cli.command {
        Command::Up { hosts, no_systemd } => {
            let options = LabOptions {
                hosts,
                dir: Some(cli.dir),
                lab_binary,
                owned_by_this_process: false,
                systemd: !no_systemd,
            };
            let lab = Lab::up(&options)?;
            print_status(&lab);
        }
        Command::Down => Lab::open(&cli.dir, lab_binary)?.down()?,
        Command::Exec { host, command } => {
            let lab = Lab::open(&cli.dir, lab_binary)?;
            let (program, args) = command.split_first().context("no command")?;
            let status = lab
                .node(&host)?
                .command(program, args)
                .status()
                .with_context(|| format!("running {program} on {host}"))?;
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
        Command::Status => print_status(&Lab::open(&cli.dir, lab_binary)?),
        Command::Demo {
            keep,
            fail_first_build,
        } => {
            let options = demo::DemoOptions {
                keep,
                fail_first_build,
            };
            demo::run(&cli.dir, lab_binary, &options).context("the demo failed")?
        }
        Command::BenchFanout(options) => {
            bench::run(&cli.dir, lab_binary, &options).context("the benchmark failed")?
        }
        Command::FormatNix { check, files } => return format_nix(check, &files),
        Command::Supervise(options) => supervise(&options)?,
        Command::ServeCache {
            root,
            listen,
            bytes_per_second,
            latency_ms,
            cut_first_nars,
            tls_certificate,
            tls_key,
        } => {
            let tls = match (tls_certificate, tls_key) {
                (Some(certificate), Some(key)) => {
                    Some(ServerIdentity { certificate, key }.server_config()?)
                }
                _ => None,
            };
            let listener =
                TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
            let pace = Pace {
                bytes_per_second,
                latency_per_request: Duration::from_millis(latency_ms),
                cut_first_nars,
            };
            serve(&root, listener, pace, tls)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats (or checks) Nix files with the alejandra formatter.
fn format_nix(check: bool, files: &[PathBuf]) -> Result<ExitCode> {
    let mut unformatted = 0;
    for file in files {
        let before =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let (status, after) = alejandra::format::in_memory(file.display().to_string(), before);
        match status {
            alejandra::format::Status::Error(error) => bail!("{}: {error}", file.display()),
            alejandra::format::Status::Changed(false) => {}
            alejandra::format::Status::Changed(true) if check => {
                eprintln!("not formatted: {}", file.display());
                unformatted += 1;
            }
            alejandra::format::Status::Changed(true) => {
                std::fs::write(file, after)?;
                eprintln!("formatted: {}", file.display());
            }
        }
    }
    Ok(if unformatted > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the lab's nodes, addresses and systems.
pub fn print_status(lab: &Lab) {
    let state = lab.state();
    println!("lab {} in {}", state.slot.bridge(), state.dir.display());
    println!("  operator side (this namespace): {}", state.slot.gateway());
    println!(
        "  builder   {:<15} cache {} (key {})",
        state.builder.address,
        lab.cache_url(),
        lab.cache_public_key()
            .unwrap_or_else(|error| format!("unreadable: {error}"))
    );
    for host in lab.hosts() {
        println!(
            "  {:<9} {:<15} {} system {}",
            host.name,
            host.address,
            host.profile_generation()
                .unwrap_or_else(|| "no generation".into()),
            host.current_system().unwrap_or_else(|| "none".into()),
        );
    }
}
