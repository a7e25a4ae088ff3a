//! `push serve --config FILE`: a push to the forge deploys. A long-running
//! service for a build machine: it takes the forge's push webhooks (checked
//! before they are read), queues them durably, fetches the repository from
//! its own config, deploys each followed branch's tip to its hosts with the
//! same rollout as `push --all REV` and its own deploy key, and reports every
//! host on the commit as a commit status. `Type=notify` with a watchdog,
//! journald, a graceful stop on SIGTERM (a rollout cut short runs again at
//! the next start).

mod api;
mod config;
mod hooks;
mod queue;
mod repository;
mod statuses;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use deployd_protocol::Revision;
use deployd_service::throttle::{ThrottledLog, REFUSAL_LOG_INTERVAL};
use deployd_service::{cancel_on_signal, logging, notify};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::ServeConfig;
use queue::{Queue, RolloutRecord};
use statuses::StatusPoster;

use crate::tls::CaFile;

/// Options of `push serve`.
#[derive(Debug, clap::Args)]
pub struct ServeOptions {
    /// The service's config (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only check the config (and read its secret files and CA file) and exit.
    #[arg(long)]
    pub check: bool,
    /// With --check: do not read the secret files nor the CA file (for
    /// checks at build time, where they are not there).
    #[arg(long, requires = "check")]
    pub skip_secret_files: bool,
    /// Log debug messages too.
    #[arg(long)]
    pub verbose: bool,
}

/// What the hooks, the worker and the status API share.
pub struct Service {
    /// The checked config.
    config: ServeConfig,
    /// The webhook secret (GitLab: token).
    webhook_secret: Vec<u8>,
    /// `ca_file`, read: trusted for the hosts and their caches, besides
    /// what push.toml trusts for them.
    ca_file: Option<Arc<CaFile>>,
    /// The pushes waiting, the rollout running, the history; written before
    /// a hook is answered.
    queue: Mutex<Queue>,
    /// Wakes the worker when a push is queued.
    wake: Notify,
    /// Posts commit statuses in the background.
    statuses: StatusPoster,
    /// The rollout running: its revision and hosts (for the status API).
    running: Mutex<Option<(Revision, Vec<String>)>>,
    /// Hooks and rollouts counted by outcome (for `/metrics`).
    counters: Mutex<api::Counters>,
    /// Refused hooks logged at most once a minute (anyone can send them),
    /// with how many were not logged.
    refusal_log: Arc<ThrottledLog>,
    /// Cancelled on SIGTERM.
    shutdown: CancellationToken,
}

impl Service {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_running(&self, running: Option<(Revision, Vec<String>)>) {
        *self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = running;
    }

    fn counters(&self) -> MutexGuard<'_, api::Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count_rollout(&self, record: &RolloutRecord) {
        self.counters()
            .rollout(&record.outcome, record.finished_at_ms);
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Runs `push serve` (or only checks its config).
pub async fn run(options: ServeOptions) -> Result<ExitCode> {
    let config = ServeConfig::load(&options.config)?;
    if options.check {
        if !options.skip_secret_files {
            config.read_secrets()?;
            config.read_ca_file()?;
        }
        eprintln!(
            "push serve: {} is valid: {} forge, {} branches followed",
            options.config.display(),
            config.forge.kind.as_str(),
            config.follow.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    logging::init("push-serve", options.verbose);
    let secrets = config.read_secrets()?;
    let ca_file = config.read_ca_file()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let queue = {
        let state_dir = config.state_dir.clone();
        tokio::task::spawn_blocking(move || Queue::open(&state_dir)).await??
    };
    let shutdown = CancellationToken::new();
    let service = Arc::new(Service {
        statuses: StatusPoster::start(&config.forge, secrets.forge_token, ca_file.as_ref())?,
        webhook_secret: secrets.webhook,
        ca_file,
        queue: Mutex::new(queue),
        wake: Notify::new(),
        running: Mutex::new(None),
        counters: Mutex::default(),
        refusal_log: ThrottledLog::new("refused hooks", REFUSAL_LOG_INTERVAL),
        shutdown: shutdown.clone(),
        config,
    });
    let bound = listener.local_addr()?;
    log::info!(
        "push serve {} listening on {bound} for {} hooks",
        env!("CARGO_PKG_VERSION"),
        service.config.forge.kind.as_str()
    );
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(interval) = notify::watchdog_interval() {
        tokio::spawn(notify::keep_watchdog_fed(interval, shutdown.clone()));
    }
    let worker = tokio::spawn(worker::run(service.clone()));
    // The worker ends only on shutdown; if it ends otherwise (a panic), the
    // service stops with an error, for systemd to start it again.
    let worker_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (shutdown, failed) = (shutdown.clone(), worker_failed.clone());
        tokio::spawn(async move {
            let ended = worker.await;
            if !shutdown.is_cancelled() {
                log::error!("the rollout worker ended: {ended:?}; stopping");
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                shutdown.cancel();
            }
        })
    };
    notify::ready();
    let router = api::router(service.clone());
    deployd_service::http::serve_router(listener, router, shutdown.clone())
        .await
        .context("serving failed")?;
    shutdown.cancel();
    let _ = watch.await;
    if worker_failed.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("the rollout worker failed; see the log");
    }
    log::info!("push serve stopped");
    Ok(ExitCode::SUCCESS)
}
