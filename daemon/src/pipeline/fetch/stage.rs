//! The stage: a local binary cache, one per deploy, under
//! `STATE_DIR/fetch/<deploy id>/`, that the fast fetch fills and Nix then
//! substitutes from (Nix: src/libstore/local-binary-cache-store.cc reads
//! `nix-cache-info`, `<hash>.narinfo` and the file its `URL` names, all
//! relative to the directory). A narinfo is written only once its NAR is
//! whole, so Nix never finds one without the other. Removed when dropped,
//! whatever the deploy's end; the stages of a previous daemon are removed
//! when the next one is made.

use std::path::{Path, PathBuf};

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

    /// Bytes free for the stage's files (and, on the same file system, the
    /// store's).
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
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
        assert!(stage.free_bytes().expect("statvfs") > 0);
        let dir = stage.dir().to_owned();
        drop(stage);
        assert!(!dir.exists());
    }
}
