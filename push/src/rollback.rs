//! `push rollback --host H` (or `--on NAMES`, `--all`): each selected host
//! returns to its previous generation, as a deploy of its own with its own
//! record. The hosts roll back at the same time, each once however often it
//! is named; with a key in `ssh-agent`, one signature covers them all.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::client::Client;
use crate::confirm::Confirmer;
use crate::flake::FlakeArg;
use crate::inventory::{Inventory, Target};
use crate::keys::{exposure_warnings, key_file_path, signing_key};
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::rollout::Unobserved;
use crate::selection::Selection;
use crate::session::{Session, StartRequest};
use crate::sign;

/// Options of `push rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackOptions {
    /// The hosts to roll back: each once, however often it is named.
    #[command(flatten)]
    pub selection: Selection,
    /// The flake's directory (push.toml in it or a parent), or DIR#HOST to
    /// roll HOST back as well.
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
    /// The deploy key: a Nix-format secret key, or an SSH public key or
    /// certificate held by ssh-agent; default DEPLOYD_KEY_FILE, then push.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Send the requests and exit without following them.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs `push rollback`.
pub async fn run(options: RollbackOptions) -> Result<ExitCode> {
    let inventory = Inventory::load(&options.flake.dir)?;
    let selection = options.selection.and_host(options.flake.host.as_ref());
    let targets = inventory.select(&selection)?;
    let key = signing_key(options.key.as_deref(), &inventory)?;
    let key_file = key_file_path(options.key.as_deref(), &inventory);
    let key_files: Vec<(&str, PathBuf)> = key_file
        .map(|path| ("deploy key", path))
        .into_iter()
        .collect();
    for warning in exposure_warnings(&inventory, &key_files) {
        eprintln!("push: warning: {warning}");
    }
    let requests = signed_rollbacks(&targets, &key).await?;
    let names: Vec<String> = targets
        .iter()
        .map(|target| target.name.to_string())
        .collect();
    let session = Session {
        client: Client::new(key.reader()),
        confirmer: Arc::new(Confirmer::new(key, Vec::new())),
        progress: Progress::new(&names),
        no_wait: options.no_wait,
        busy_wait: std::time::Duration::ZERO,
        confirm: false,
        observer: Arc::new(Unobserved),
    };
    let rollbacks = targets.iter().zip(requests).map(|(target, request)| {
        let session = &session;
        async move {
            let started = Instant::now();
            let result = session.send_and_follow(target, request).await;
            session
                .progress
                .phase(target.name.as_str(), outcome::phase(&result));
            HostResult {
                host: target.name.to_string(),
                rev: None,
                result,
                elapsed: started.elapsed(),
                batch: None,
            }
        }
    });
    let results = futures_util::future::join_all(rollbacks).await;
    print!("{}", outcome::summary(&results));
    Ok(outcome::exit_code(&results))
}

/// One signed rollback request per target, in their order.
async fn signed_rollbacks(
    targets: &[Target],
    key: &crate::keys::DeployKey,
) -> Result<Vec<StartRequest>> {
    let now = sign::now();
    let messages = targets
        .iter()
        .map(|target| sign::rollback_message(&target.name, now))
        .collect::<Result<Vec<_>>>()?;
    let deploy_ids = messages
        .iter()
        .map(|message| {
            sign::deploy_id(message)
                .cloned()
                .context("a rollback names its deploy")
        })
        .collect::<Result<Vec<_>>>()?;
    let envelopes = sign::sign_messages_off_runtime(messages, key.clone()).await?;
    Ok(deploy_ids
        .into_iter()
        .zip(envelopes)
        .map(|(deploy_id, envelope)| StartRequest {
            path: "/v1/rollback",
            envelope,
            deploy_id,
        })
        .collect())
}
