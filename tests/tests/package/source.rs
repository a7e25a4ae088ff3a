//! A package's build directory as nixpkgs lays it out: the source set's
//! git-tracked files copied to `source/` (what `lib.fileset.toSource` gives
//! in a flake, whose source is its git-tracked files), every crate of its
//! `Cargo.lock` in `cargo-vendor-dir/` (what `importCargoLock` fetches, in
//! `pkgs/build-support/rust/import-cargo-lock.nix`), and a
//! `.cargo/config.toml` above the source that replaces crates.io with them
//! (what cargo's setup hook writes). The directory goes on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_lab::run::run_within;
use tempfile::TempDir;

use super::declared::SourceSet;

/// How long fetching and vendoring the crates may take.
const VENDOR_TIMEOUT: Duration = Duration::from_secs(600);

/// The cargo that runs this test, so that every step uses one toolchain.
pub fn cargo() -> PathBuf {
    PathBuf::from(env!("CARGO"))
}

/// A build's directory, removed on drop.
pub struct BuildTop {
    dir: TempDir,
}

impl BuildTop {
    /// A fresh, empty build directory.
    pub fn new() -> Result<BuildTop> {
        let dir = tempfile::Builder::new()
            .prefix("deployd-package-")
            .tempdir()
            .context("a build directory")?;
        Ok(BuildTop { dir })
    }

    /// The build directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the source set is copied, and cargo runs.
    pub fn source(&self) -> PathBuf {
        self.path().join("source")
    }

    /// Copies the git-tracked files under `set`'s paths into
    /// [`BuildTop::source`]; returns how many. A path with no tracked file
    /// fails: a flake's source would not have it.
    pub fn copy(&self, set: &SourceSet) -> Result<usize> {
        let mut copied = 0;
        for relative in set.relative_paths()? {
            let listed = run_within(
                Command::new("git")
                    .arg("-C")
                    .arg(&set.root)
                    .args(["ls-files", "-z", "--"])
                    .arg(&relative),
                Duration::from_secs(60),
            )?;
            let files: Vec<&[u8]> = listed
                .stdout
                .split(|&byte| byte == 0)
                .filter(|name| !name.is_empty())
                .collect();
            if files.is_empty() {
                bail!(
                    "{} has no git-tracked file, so a flake's source would not have it",
                    relative.display()
                );
            }
            for file in files {
                let file = Path::new(std::str::from_utf8(file).context("a UTF-8 file name")?);
                let from = set.root.join(file);
                if from.is_symlink() {
                    bail!(
                        "{}: this harness does not copy symbolic links",
                        file.display()
                    );
                }
                let to = self.source().join(file);
                std::fs::create_dir_all(to.parent().context("a parent")?)
                    .with_context(|| format!("creating the directory of {}", to.display()))?;
                std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// Vendors every crate of the source's `Cargo.lock`, for every platform
    /// as `importCargoLock` does, into `cargo-vendor-dir/`, and writes the
    /// `.cargo/config.toml` that points cargo there.
    ///
    /// `cargo fetch` fills cargo's download cache first: the workspace's
    /// own builds only download this platform's crates, and `cargo vendor`
    /// wants all. It reaches crates.io only for a crate not yet cached,
    /// like the fixed-output fetches of nixpkgs, outside the build sandbox.
    pub fn vendor(&self) -> Result<()> {
        let vendor = self.path().join("cargo-vendor-dir");
        run_within(
            Command::new(cargo())
                .current_dir(self.source())
                .args(["fetch", "--locked"]),
            VENDOR_TIMEOUT,
        )?;
        run_within(
            Command::new(cargo())
                .current_dir(self.source())
                .args(["vendor", "--locked", "--offline"])
                .arg(&vendor),
            VENDOR_TIMEOUT,
        )?;
        let config = self.path().join(".cargo");
        std::fs::create_dir_all(&config).context("creating .cargo")?;
        let replace = format!(
            "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
             [source.vendored-sources]\ndirectory = \"{}\"\n",
            vendor.display()
        );
        std::fs::write(config.join("config.toml"), replace).context("writing .cargo/config.toml")
    }
}
