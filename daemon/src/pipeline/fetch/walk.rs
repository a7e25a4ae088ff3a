//! The walk: the closure of the system, breadth-first from it, level by
//! level. Each level's paths already valid in the host's store are dropped
//! (they and their closures are there: a valid path's references are
//! valid); the narinfos of the others are asked [`NARINFOS_IN_FLIGHT`] at
//! once, each of the caches in priority order until one has it, and each
//! NAR is downloaded as soon as its narinfo arrives, [`NARS_IN_FLIGHT`] at
//! once, streamed to a file. A path no cache has is left for Nix to report.

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
use super::stage::Stage;

/// Narinfo requests at once, over all caches.
pub const NARINFOS_IN_FLIGHT: usize = 64;
/// NAR downloads at once.
pub const NARS_IN_FLIGHT: usize = 24;
/// The most paths a closure may have: a NixOS system has a few thousand.
pub const MAX_PATHS: usize = 100_000;

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

/// Walks the closure of `system` from `caches` (in priority order) into
/// `stage`. `invalid_of` answers which of the paths it is given are not
/// valid in the host's store.
pub async fn walk<V, F>(
    system: &StorePath,
    caches: Arc<Vec<Cache>>,
    stage: Arc<Stage>,
    progress: Arc<Progress>,
    invalid_of: V,
) -> Result<(), WalkError>
where
    V: Fn(Vec<StorePath>) -> F,
    F: Future<Output = Result<Vec<StorePath>, String>>,
{
    let mut downloads: JoinSet<Result<(), WalkError>> = JoinSet::new();
    let walked = walk_into(system, caches, stage, progress, invalid_of, &mut downloads).await;
    // Downloads still running when the walk stopped are ended, and waited
    // for: none holds the stage once the walk returns.
    downloads.shutdown().await;
    walked
}

async fn walk_into<V, F>(
    system: &StorePath,
    caches: Arc<Vec<Cache>>,
    stage: Arc<Stage>,
    progress: Arc<Progress>,
    invalid_of: V,
    downloads: &mut JoinSet<Result<(), WalkError>>,
) -> Result<(), WalkError>
where
    V: Fn(Vec<StorePath>) -> F,
    F: Future<Output = Result<Vec<StorePath>, String>>,
{
    let free = stage.free_bytes().map_err(WalkError::Stage)?;
    let needed = AtomicU64::new(0);
    let nar_slots = Arc::new(Semaphore::new(NARS_IN_FLIGHT));
    let mut seen: HashSet<StorePath> = HashSet::from([system.clone()]);
    let mut level = vec![system.clone()];
    while !level.is_empty() {
        let wanted = invalid_of(level).await.map_err(WalkError::Validity)?;
        let mut next = Vec::new();
        let mut lookups = stream::iter(wanted)
            .map(|path| {
                let caches = caches.clone();
                async move { find(&caches, &path).await }
            })
            .buffer_unordered(NARINFOS_IN_FLIGHT);
        while let Some(found) = lookups.next().await {
            let Some((cache, info)) = found? else {
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
            progress.found(info.expected_bytes());
            let name = staged_nar_name(&info.store_path, &info.compression).ok_or_else(|| {
                WalkError::Compression {
                    path: info.store_path.to_string(),
                    compression: info.compression.clone(),
                }
            })?;
            let (caches, stage, progress, slots) = (
                caches.clone(),
                stage.clone(),
                progress.clone(),
                nar_slots.clone(),
            );
            downloads.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("never closed");
                let file = stage.nar_file(&name);
                caches[cache].download_nar(&info, &file, &progress).await?;
                stage
                    .add_narinfo(&info, &name)
                    .await
                    .map_err(WalkError::Stage)?;
                progress.staged();
                Ok(())
            });
            // A failed download stops the walk now, not at its end.
            while let Some(done) = downloads.try_join_next() {
                done.map_err(|error| WalkError::Task(error.to_string()))??;
            }
        }
        level = next;
    }
    while let Some(done) = downloads.join_next().await {
        done.map_err(|error| WalkError::Task(error.to_string()))??;
    }
    Ok(())
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
