//! The stage: a local binary cache, one per deploy, under
//! `STATE_DIR/fetch/<deploy id>/`, that the fast fetch fills and Nix then
//! substitutes from (Nix: src/libstore/local-binary-cache-store.cc reads
//! `nix-cache-info`, `<hash>.narinfo` and the file its `URL` names, all
//! relative to the directory). A narinfo is written only once its NAR is
//! whole, so Nix never finds one without the other. Removed when dropped,
//! whatever the deploy's end; the stages of a previous daemon are removed
//! when the next one is made. Made only when the walk finds more than a
//! few paths to fetch ([`LazyStage`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployd_protocol::STORE_DIR;

use super::narinfo::NarInfo;

/// A deploy's stage.
#[derive(Debug)]
pub struct Stage {
    /// Its directory.
    dir: PathBuf,
}

impl Stage {
    /// Makes the stage of deploy `id` under `state_dir`, removing any left
    /// by an earlier deploy. `priority` is its `nix-cache-info` Priority:
    /// below every configured cache's, so Nix asks it first (Nix:
    /// src/libstore/binary-cache-store.cc reads Priority; lower is asked
    /// first).
    pub fn create(state_dir: &Path, id: &str, priority: i64) -> std::io::Result<Stage> {
        let root = state_dir.join("fetch");
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        let dir = root.join(id);
        std::fs::create_dir_all(dir.join("nar"))?;
        let stage = Stage { dir };
        std::fs::write(
            stage.dir.join("nix-cache-info"),
            format!("StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: {priority}\n"),
        )?;
        Ok(stage)
    }

    /// Its directory.
    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its store URL, for `substituters`.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// Where the NAR file named `name` (from [`super::narinfo::staged_nar_name`]) goes.
    pub fn nar_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Adds `info`'s narinfo, its URL pointing at the staged `name`;
    /// written whole or not at all.
    pub async fn add_narinfo(&self, info: &NarInfo, name: &str) -> std::io::Result<()> {
        let file = self
            .dir
            .join(format!("{}.narinfo", info.store_path.hash_part()));
        let partial = file.with_extension("narinfo.partial");
        tokio::fs::write(&partial, info.with_url(name)).await?;
        tokio::fs::rename(&partial, &file).await
    }
}

/// A deploy's stage before it is needed: where it goes, made at the first
/// [`LazyStage::make`], so a fetch that stages nothing makes no directory.
#[derive(Debug)]
pub struct LazyStage {
    /// The state directory, whose `fetch/` holds the stages.
    state_dir: PathBuf,
    /// The deploy's id.
    id: String,
    /// The stage's `nix-cache-info` Priority (see [`Stage::create`]).
    priority: i64,
    /// The stage, once made.
    made: Option<Arc<Stage>>,
}

impl LazyStage {
    /// The stage of deploy `id` under `state_dir`, not made yet.
    pub fn new(state_dir: &Path, id: &str, priority: i64) -> LazyStage {
        LazyStage {
            state_dir: state_dir.to_owned(),
            id: id.to_owned(),
            priority,
            made: None,
        }
    }

    /// The stage, made at the first call.
    pub fn make(&mut self) -> std::io::Result<Arc<Stage>> {
        if let Some(stage) = &self.made {
            return Ok(stage.clone());
        }
        let stage = Arc::new(Stage::create(&self.state_dir, &self.id, self.priority)?);
        self.made = Some(stage.clone());
        Ok(stage)
    }

    /// Bytes free for the stage's files (and, on the same file system, the
    /// store's), made or not.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.state_dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// The stage, if it was made and nothing else holds it (else it is
    /// removed when the last holder drops it, and Nix fetches without it).
    pub fn into_made(self) -> Option<Stage> {
        let stage = Arc::into_inner(self.made?);
        if stage.is_none() {
            log::warn!(
                "deploy {}: the fetch stage was still held; Nix fetches without it",
                self.id
            );
        }
        stage
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                log::warn!(
                    "cannot remove the fetch stage {}: {error}",
                    self.dir.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_cleaned_and_removed() {
        let state = tempfile::tempdir().expect("temp dir");
        let stale = state.path().join("fetch/old-deploy/nar");
        std::fs::create_dir_all(&stale).expect("stale stage");
        let stage = Stage::create(state.path(), "d-1", -1).expect("stage");
        assert!(!stale.exists());
        assert_eq!(
            std::fs::read_to_string(stage.dir().join("nix-cache-info")).expect("info"),
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: -1\n"
        );
        assert_eq!(
            stage.url(),
            format!("file://{}", state.path().join("fetch/d-1").display())
        );
        let dir = stage.dir().to_owned();
        drop(stage);
        assert!(!dir.exists());
    }

    #[test]
    fn made_only_when_asked_and_once() {
        let state = tempfile::tempdir().expect("temp dir");
        let mut lazy = LazyStage::new(state.path(), "d-2", -1);
        assert!(lazy.free_bytes().expect("statvfs") > 0);
        assert!(!state.path().join("fetch").exists());
        let first = lazy.make().expect("stage");
        let second = lazy.make().expect("the same stage");
        assert!(Arc::ptr_eq(&first, &second));
        assert!(state.path().join("fetch/d-2/nix-cache-info").exists());
        assert!(lazy.make().expect("stage").dir().exists());
        drop((first, second));
        let stage = lazy.into_made().expect("made, no other holder");
        let dir = stage.dir().to_owned();
        drop(stage);
        assert!(!dir.exists());
        let never = LazyStage::new(state.path(), "d-3", -1);
        assert!(never.into_made().is_none());
    }
}
