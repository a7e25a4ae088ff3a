//! `push serve --config FILE`: a push to the forge deploys. A long-running
//! service for a build machine: it takes the forge's push webhooks (checked
//! before they are read), queues them durably, fetches the repository from
//! its own config, deploys each followed branch's tip to its hosts with the
//! same rollout as `push --all REV` and its own deploy key, and reports every
//! host on the commit as a commit status. The flake is evaluated and built
//! by `[build] user`, who cannot read the service's secret files (see
//! `build_user`). `Type=notify` with a watchdog,
//! journald, a graceful stop on SIGTERM (a rollout cut short runs again at
//! the next start).

mod api;
mod build_settings;
mod channel;
mod config;
mod credentials;
mod following;
mod hook_body;
mod hooks;
mod pages;
mod queue;
mod repository;
#[cfg(test)]
mod router_tests;
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
use hook_body::{BodyLimits, BodyReader};
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
    /// Reads hook bodies: a few large ones at a time, each within a time.
    bodies: BodyReader,
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
    /// The channel of the hosts that pull: their desired states, their
    /// reports, the long polls waiting.
    channel: channel::Channel,
    /// The pages' memory: the rollouts' phases and lines, the hosts' answers.
    pages: pages::Pages,
    /// Cancelled on SIGTERM.
    shutdown: CancellationToken,
}

impl Service {
    /// A hook refused with `outcome`: counted in `/metrics`; whether to log
    /// it (the first of its kind in a minute: a peer cannot flood the
    /// journal; the others are summed up in one line at the minute's end).
    pub fn refused(&self, outcome: &'static str) -> bool {
        self.counters().hook(outcome);
        self.refusal_log.admit(outcome)
    }

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

/// What `push serve --help` says about its exit statuses.
pub const EXIT_HELP: &str = "Exit status: with --check, 0 the config is valid and 2 it is not; \
                             without, 0 stopped by SIGTERM or SIGINT, 2 a bad config or an \
                             address it cannot listen on (a host's failure never stops it: \
                             it is reported on the commit).";

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
    // Checked again before every build; said at start as well, so that a
    // build user that cannot run or can read a secret shows at once.
    if let Some(user) = config.build_machine().build_user {
        match user.check().await {
            Ok(()) => log::info!(
                "the flake is evaluated and built as {}:{}, who can read none of the secret files",
                user.user,
                user.group
            ),
            Err(error) => log::error!("{error:#}: every build will fail until this is fixed"),
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let queue = {
        let state_dir = config.state_dir.clone();
        tokio::task::spawn_blocking(move || Queue::open(&state_dir)).await??
    };
    let own_key = Arc::new(
        deployd_protocol::SecretKey::load(&config.key_file)
            .with_context(|| format!("cannot use the deploy key {}", config.key_file.display()))?,
    );
    let pages = pages::Pages::new(&config.state_dir, own_key.clone());
    let (channel, pages) = {
        let own_key = own_key.public_key();
        let (state_dir, publishers) = (config.state_dir.clone(), config.channel.publishers.clone());
        let clone_dir = config.clone_dir();
        let ca_file = ca_file.clone();
        tokio::task::spawn_blocking(move || -> Result<(channel::Channel, pages::Pages)> {
            let channel = channel::Channel::open(&state_dir, own_key, &publishers)?;
            // The hosts of the push.toml last fetched, until the next rollout reads it again.
            if clone_dir.join(crate::inventory::INVENTORY_FILE).exists() {
                match crate::inventory::Inventory::load_from_repository(&clone_dir) {
                    Ok(inventory) => {
                        channel.set_fleet(&inventory);
                        pages.set_fleet(&inventory, ca_file.as_ref());
                    }
                    Err(error) => {
                        log::warn!("the channel and the pages know no host until the next rollout: {error:#}")
                    }
                }
            }
            Ok((channel, pages))
        })
        .await??
    };
    let shutdown = CancellationToken::new();
    let service = Arc::new(Service {
        channel,
        pages,
        statuses: StatusPoster::start(&config.forge, secrets.forge_token, ca_file.as_ref())?,
        webhook_secret: secrets.webhook,
        bodies: BodyReader::new(BodyLimits::default()),
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
    match service.config.page_url("/") {
        Some(url) => log::info!("the fleet's pages: {url}"),
        None => {
            log::warn!("public_url is not set: commit statuses carry no link to the rollout's page")
        }
    }
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
