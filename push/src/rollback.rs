//! `push rollback --host H`: the host returns to its previous generation, as
//! a deploy of its own with its own record.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use deployd_protocol::HostName;

use crate::client::Client;
use crate::confirm::Confirmer;
use crate::inventory::Inventory;
use crate::keys::signing_key;
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::rollout::Unobserved;
use crate::session::{Session, StartRequest};
use crate::sign;

/// Options of `push rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackOptions {
    /// The host to roll back.
    #[arg(long = "host", value_name = "HOST")]
    pub host: HostName,
    /// The flake's directory (with push.toml).
    #[arg(long, default_value = ".")]
    pub flake: PathBuf,
    /// The deploy key: a Nix-format secret key, or an SSH public key or
    /// certificate held by ssh-agent; default DEPLOYD_KEY_FILE, then push.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Send the request and exit without following it.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs `push rollback`.
pub async fn run(options: RollbackOptions) -> Result<ExitCode> {
    let inventory = Inventory::load(&options.flake)?;
    let target = inventory.target(&options.host)?;
    let key = signing_key(options.key.as_deref(), &inventory, &options.flake)?;
    let message = sign::rollback_message(&target.name)?;
    let deploy_id = sign::deploy_id(&message)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("a rollback names its deploy"))?;
    let envelope = sign::sign_messages_off_runtime(vec![message], key.clone())
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no envelope was signed"))?;
    let session = Session {
        client: Client::new(key.reader()),
        confirmer: Arc::new(Confirmer::new(key, Vec::new())),
        progress: Progress::new(&[target.name.to_string()]),
        no_wait: options.no_wait,
        busy_wait: std::time::Duration::ZERO,
        confirm: false,
        observer: Arc::new(Unobserved),
    };
    let started = Instant::now();
    let request = StartRequest {
        path: "/v1/rollback",
        envelope,
        deploy_id,
    };
    let result = session.send_and_follow(&target, request).await;
    session
        .progress
        .phase(target.name.as_str(), outcome::phase(&result));
    let results = [HostResult {
        host: target.name.to_string(),
        rev: None,
        result,
        elapsed: started.elapsed(),
    }];
    print!("{}", outcome::summary(&results));
    Ok(outcome::exit_code(&results))
}
