//! The walk: the closure of the system, breadth-first from it, level by
//! level. Each level's paths already valid in the host's store are dropped
//! (they and their closures are there: a valid path's references are
//! valid); the narinfos of the others are asked [`NARINFOS_IN_FLIGHT`] at
//! once, each of the caches in priority order until one has it. Once more
//! than [`FEW_PATHS`] paths are found to fetch, the stage is made and each
//! NAR is downloaded as soon as its narinfo arrives (those found before at
//! once), [`NARS_IN_FLIGHT`] at once, streamed to a file; a closure with
//! no more than that is left to Nix whole, nothing downloaded. A path no
//! cache has is left for Nix to report.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deployd_protocol::StorePath;
use futures_util::{stream, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cache::{Cache, CacheError};
use super::narinfo::{staged_nar_name, NarInfo};
use super::progress::Progress;
use super::stage::{LazyStage, Stage};
use crate::pipeline::nix::FETCH_JOBS;

/// Narinfo requests at once, over all caches.
pub const NARINFOS_IN_FLIGHT: usize = 64;
/// NAR downloads at once.
pub const NARS_IN_FLIGHT: usize = 24;
/// The most paths a closure may have: a NixOS system has a few thousand.
pub const MAX_PATHS: usize = 100_000;
/// The most paths to fetch that are left to Nix alone, without a stage:
/// as many as Nix substitutes at once ([`FETCH_JOBS`]). Nix then has
/// every one of them in flight as soon as their references are there, so
/// the stage could save at most a few round trips (such a closure has few
/// levels), while it costs every NAR written to disk and read back, and
/// its narinfos, on each small update: the common deploy, and the one a
/// fleet of many hosts pays for on every host. Their narinfos were
/// already asked by the walk; Nix asks them again.
pub const FEW_PATHS: usize = FETCH_JOBS as usize;

/// Why the walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A cache failed or answered something unexpected.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The host's store could not be asked which paths it has.
    #[error("cannot ask the store which paths it has: {0}")]
    Validity(String),
    /// A narinfo whose compression Nix would not read.
    #[error("{path}: its narinfo's compression {compression:?} is unknown")]
    Compression {
        /// The path.
        path: String,
        /// Its compression.
        compression: String,
    },
    /// More than [`MAX_PATHS`] paths.
    #[error("the closure has more than {MAX_PATHS} paths")]
    TooManyPaths,
    /// Not enough free disk for the stage and the store.
    #[error("{needed_mb} MB are needed on the state directory's disk, {free_mb} MB are free")]
    Disk {
        /// What the NARs found so far need (staged, then unpacked).
        needed_mb: u64,
        /// What was free when the fetch began.
        free_mb: u64,
    },
    /// Writing the stage failed.
    #[error("writing the stage: {0}")]
    Stage(std::io::Error),
    /// A download's task ended abnormally.
    #[error("a download ended abnormally: {0}")]
    Task(String),
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// More than [`FEW_PATHS`] paths to fetch: every one found is staged.
    Staged,
    /// This many paths to fetch, at most [`FEW_PATHS`]: nothing was
    /// downloaded and no stage was made; Nix fetches them itself.
    Few(usize),
}

/// Walks the closure of `system` from `caches` (in priority order) into
/// `stage`, made only once more than [`FEW_PATHS`] paths are found to
/// fetch: until then their NARs wait, and a closure with no more than
/// that is left to Nix whole. `invalid_of` answers which of the paths it
/// is given are not valid in the host's store.
pub async fn walk<V, F>(
    system: &StorePath,
    caches: Arc<Vec<Cache>>,
    stage: &mut LazyStage,
    progress: Arc<Progress>,
    invalid_of: V,
) -> Result<Walked, WalkError>
where
    V: Fn(Vec<StorePath>) -> F,
    F: Future<Output = Result<Vec<StorePath>, String>>,
{
    let mut downloads = Downloads {
        running: JoinSet::new(),
        caches,
        progress,
        slots: Arc::new(Semaphore::new(NARS_IN_FLIGHT)),
    };
    let walked = walk_into(system, stage, &mut downloads, invalid_of).await;
    // Downloads still running when the walk stopped are ended, and waited
    // for: none holds the stage once the walk returns.
    downloads.running.shutdown().await;
    walked
}

/// A NAR to download once the stage is there.
struct Waiting {
    /// Which cache has it.
    cache: usize,
    /// Its narinfo.
    info: NarInfo,
    /// Its file's name in the stage.
    name: String,
}

/// The walk's NAR downloads.
struct Downloads {
    /// Those started and not yet joined.
    running: JoinSet<Result<(), WalkError>>,
    /// The caches, in priority order.
    caches: Arc<Vec<Cache>>,
    /// What the fetch has done.
    progress: Arc<Progress>,
    /// Keeps the downloads at most [`NARS_IN_FLIGHT`].
    slots: Arc<Semaphore>,
}

impl Downloads {
    /// Starts downloading `waiting`'s NAR into `stage`, then its narinfo.
    fn start(&mut self, stage: &Arc<Stage>, waiting: Waiting) {
        let (caches, stage, progress, slots) = (
            self.caches.clone(),
            stage.clone(),
            self.progress.clone(),
            self.slots.clone(),
        );
        self.running.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let Waiting { cache, info, name } = waiting;
            let file = stage.nar_file(&name);
            caches[cache].download_nar(&info, &file, &progress).await?;
            stage
                .add_narinfo(&info, &name)
                .await
                .map_err(WalkError::Stage)?;
            progress.staged();
            Ok(())
        });
    }

    /// The first failure among the downloads that ended, if any.
    fn check_ended(&mut self) -> Result<(), WalkError> {
        while let Some(done) = self.running.try_join_next() {
            done.map_err(|error| WalkError::Task(error.to_string()))??;
        }
        Ok(())
    }

    /// Waits for every download; the first failure.
    async fn finish(&mut self) -> Result<(), WalkError> {
        while let Some(done) = self.running.join_next().await {
            done.map_err(|error| WalkError::Task(error.to_string()))??;
        }
        Ok(())
    }
}

async fn walk_into<V, F>(
    system: &StorePath,
    stage: &mut LazyStage,
    downloads: &mut Downloads,
    invalid_of: V,
) -> Result<Walked, WalkError>
where
    V: Fn(Vec<StorePath>) -> F,
    F: Future<Output = Result<Vec<StorePath>, String>>,
{
    let free = stage.free_bytes().map_err(WalkError::Stage)?;
    let needed = AtomicU64::new(0);
    let mut seen: HashSet<StorePath> = HashSet::from([system.clone()]);
    // NARs found while there are still few: downloaded only once there
    // are more (then `staged` holds the stage).
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut staged: Option<Arc<Stage>> = None;
    let mut found = 0;
    let mut level = vec![system.clone()];
    while !level.is_empty() {
        let wanted = invalid_of(level).await.map_err(WalkError::Validity)?;
        let mut next = Vec::new();
        let caches = downloads.caches.clone();
        let mut lookups = stream::iter(wanted)
            .map(|path| {
                let caches = caches.clone();
                async move { find(&caches, &path).await }
            })
            .buffer_unordered(NARINFOS_IN_FLIGHT);
        while let Some(lookup) = lookups.next().await {
            let Some((cache, info)) = lookup? else {
                continue;
            };
            for reference in &info.references {
                if seen.insert(reference.clone()) {
                    next.push(reference.clone());
                }
            }
            if seen.len() > MAX_PATHS {
                return Err(WalkError::TooManyPaths);
            }
            // Room for the NAR file and, on the same disk, what Nix
            // unpacks from it.
            let need = info.expected_bytes() + info.nar_size;
            let needed = needed.fetch_add(need, Ordering::Relaxed) + need;
            if needed > free {
                return Err(WalkError::Disk {
                    needed_mb: needed / 1_000_000,
                    free_mb: free / 1_000_000,
                });
            }
            downloads.progress.found(info.expected_bytes());
            found += 1;
            let name = staged_nar_name(&info.store_path, &info.compression).ok_or_else(|| {
                WalkError::Compression {
                    path: info.store_path.to_string(),
                    compression: info.compression.clone(),
                }
            })?;
            waiting.push(Waiting { cache, info, name });
            if staged.is_none() && found > FEW_PATHS {
                staged = Some(stage.make().map_err(WalkError::Stage)?);
            }
            if let Some(stage) = &staged {
                for one in waiting.drain(..) {
                    downloads.start(stage, one);
                }
            }
            // A failed download stops the walk now, not at its end.
            downloads.check_ended()?;
        }
        level = next;
    }
    if staged.is_none() {
        return Ok(Walked::Few(found));
    }
    downloads.finish().await?;
    Ok(Walked::Staged)
}

/// The first cache (in priority order) that has `path`, with its narinfo.
/// Nix: src/libstore/build/substitution-goal.cc tries the substituters in
/// turn and takes the first that has the path.
async fn find(caches: &[Cache], path: &StorePath) -> Result<Option<(usize, NarInfo)>, WalkError> {
    for (index, cache) in caches.iter().enumerate() {
        if let Some(info) = cache.narinfo(path).await? {
            return Ok(Some((index, info)));
        }
    }
    Ok(None)
}
