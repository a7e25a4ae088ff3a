//! The fast fetch: the system's closure walked from the configured caches
//! with many requests in flight, its NARs downloaded in parallel into a
//! stage (a local binary cache), which Nix then substitutes from first.
//! Nix keeps every check: it reads the staged narinfos, verifies their
//! signatures against `[nix] trusted_public_keys` (`require-sigs`) and
//! hashes every NAR as it unpacks it, so nothing unverified becomes valid.
//! On anything unexpected the fast fetch stops, says so in one line, and
//! Nix fetches the rest from the caches itself: what was staged is still
//! used. See docs/src/design/what-a-deploy-does.md.

mod cache;
mod narinfo;
mod progress;
mod stage;
mod walk;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deployd_command as command;
use deployd_command::Invocation;
use deployd_protocol::{DeployId, StorePath};

use crate::config::Config;
use crate::daemon::Daemon;
use cache::Cache;
use progress::Progress;
use stage::LazyStage;
pub use stage::Stage;
use walk::Walked;

/// Paths asked of `nix-store --check-validity` at once.
const VALIDITY_BATCH: usize = 1000;
/// The most time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Fetches what it can of `system`'s closure into a new stage for deploy
/// `id`, logging its progress; `None` when there is no stage (the fast
/// fetch is off, found no more than [`walk::FEW_PATHS`] paths to fetch,
/// or the stage could not be made). Keep the stage until Nix has
/// realised the system: dropping it removes it.
pub async fn fetch(daemon: &Daemon, id: &DeployId, system: &StorePath) -> Option<Stage> {
    let config = daemon.config();
    if !config.file.nix.fast_fetch {
        return None;
    }
    let stopped = |reason: &dyn std::fmt::Display| {
        daemon.log(
            id,
            &format!("deployd: fast fetch stopped: {reason}; Nix fetches the rest itself"),
        )
    };
    let caches = match open_caches(&config).await {
        Ok(caches) => caches,
        Err(reason) => {
            stopped(&reason);
            return None;
        }
    };
    // Below every cache's priority, so Nix asks the stage first; 0 at most.
    let priority = caches
        .iter()
        .map(|cache| cache.priority)
        .min()
        .unwrap_or(0)
        .min(1)
        - 1;
    let mut stage = LazyStage::new(&config.file.state_dir, id.as_str(), priority);
    let progress = Arc::new(Progress::default());
    let walked = {
        let walk = walk::walk(
            system,
            Arc::new(caches),
            &mut stage,
            progress.clone(),
            |paths| invalid_paths(&config, paths),
        );
        tokio::pin!(walk);
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        ticks.tick().await;
        loop {
            tokio::select! {
                walked = &mut walk => break walked,
                _ = ticks.tick() => show(daemon, id, &progress),
            }
        }
    };
    match walked {
        Ok(Walked::Staged) => show(daemon, id, &progress),
        Ok(Walked::Few(paths)) => daemon.log(
            id,
            &format!(
                "deployd: {paths} paths to fetch, no more than Nix fetches at once: \
                 Nix fetches them itself, without a stage"
            ),
        ),
        Err(reason) => {
            show(daemon, id, &progress);
            stopped(&reason);
        }
    }
    // Every download has ended (the walk waits for them, also when it
    // stops): no other holder is left.
    stage.into_made()
}

/// Logs the notes (retries) and the progress line.
fn show(daemon: &Daemon, id: &DeployId, progress: &Progress) {
    for note in progress.take_notes() {
        daemon.log(id, &note);
    }
    daemon.log(id, &progress.line());
}

/// The configured caches, their `nix-cache-info` read, in the order Nix
/// asks them.
async fn open_caches(config: &Config) -> Result<Vec<Cache>, String> {
    let substituters = &config.file.nix.substituters;
    if let Some(other) = substituters
        .iter()
        .find(|url| !url.starts_with("http://") && !url.starts_with("https://"))
    {
        return Err(format!("{other} is not an http(s) cache"));
    }
    let client = shared_client()?;
    let opened = futures_util::future::join_all(
        substituters
            .iter()
            .enumerate()
            .map(|(order, url)| Cache::open(client.clone(), url, order)),
    )
    .await;
    let mut caches = opened
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    cache::in_priority_order(&mut caches);
    Ok(caches)
}

/// The HTTP client of every fast fetch, made at the first: reading and
/// parsing the system's CA bundle costs more CPU than a small fetch, and
/// its pool keeps connections to the caches open between deploys. The
/// bundle is read once per daemon run, as a restart of it reads it again.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let mut tls = crate::pipeline::health::http::tls_config(None, "[nix]")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = cache::client(tls)?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// Which of `paths` are not valid in the host's store: a path with
/// nothing at its place in `/nix/store` is not (a valid path is always
/// there), so on a host that lacks the closure no command runs at all;
/// the others are asked of `nix-store --check-validity --print-invalid`,
/// in batches.
async fn invalid_paths(config: &Config, paths: Vec<StorePath>) -> Result<Vec<StorePath>, String> {
    let (present, mut invalid): (Vec<StorePath>, Vec<StorePath>) =
        paths.into_iter().partition(is_present);
    for batch in present.chunks(VALIDITY_BATCH) {
        let asked = check_validity(config, batch);
        let answer = command::run(&asked, |_| {})
            .await
            .map_err(|error| error.to_string())?;
        let named: std::collections::HashSet<&str> = answer.stdout.lines().collect();
        invalid.extend(
            batch
                .iter()
                .filter(|path| named.contains(path.as_str()))
                .cloned(),
        );
    }
    Ok(invalid)
}

/// Whether anything is at `path`'s place in the store (valid or not:
/// Nix's database says which).
pub(super) fn is_present(path: &StorePath) -> bool {
    std::fs::symlink_metadata(path.as_str()).is_ok()
}

/// `nix-store --check-validity --print-invalid PATHS`: prints the paths
/// not valid, and exits 0 (Nix: src/nix-store/nix-store.cc,
/// `opCheckValidity`).
fn check_validity(config: &Config, paths: &[StorePath]) -> Invocation {
    let args = ["--check-validity", "--print-invalid"]
        .into_iter()
        .map(String::from)
        .chain(paths.iter().map(|path| path.as_str().to_owned()));
    Invocation::new(&config.file.nix.nix_store, args, config.fetch_timeout())
}
