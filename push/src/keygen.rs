//! `push keygen NAME [--out DIR]`: a new deploy key pair, written so that the
//! secret half is private from its first byte and nothing is overwritten.
//!
//! The keys go where an operator's keys belong, outside any repository (a
//! secret key in a flake's work tree is one `git add -A` away from the
//! world-readable Nix store): `$XDG_CONFIG_HOME/deployd/keys`, else
//! `~/.config/deployd/keys`, or `--out DIR`. A missing directory is created
//! with its missing parents, mode 0700. An existing one that other users
//! may read is used with a warning: the secret file is mode 0600 whatever
//! its directory, so only the names show. One that other users may write
//! (without the sticky bit) is refused: they could replace NAME.public
//! before it is trusted on the hosts, or remove the secret.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use deployd_protocol::{KeyName, SecretKey};

/// Options of `push keygen`.
#[derive(clap::Args)]
pub struct KeygenOptions {
    /// The key's name, its id on the wire (for example `ops-1`).
    name: KeyName,
    /// Directory to write the two files into, created (mode 0700) when
    /// missing; default: $XDG_CONFIG_HOME/deployd/keys, else
    /// ~/.config/deployd/keys. Refused when other users may write to it.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// What `push keygen --help` says about its exit statuses.
pub const EXIT_HELP: &str =
    "Exit status: 0 both files written; 2 bad usage, or a file that exists or cannot be written.";

/// Generates the key and writes `NAME.secret` and `NAME.public`.
pub fn run(options: &KeygenOptions) -> Result<()> {
    let dir = match &options.out {
        Some(dir) => dir.clone(),
        None => default_dir()?,
    };
    private_dir(&dir)?;
    let secret_path = dir.join(format!("{}.secret", options.name));
    let public_path = dir.join(format!("{}.public", options.name));
    for path in [&secret_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            );
        }
    }
    let secret = SecretKey::generate(options.name.clone()).context("generating the key")?;
    write_new(&secret_path, 0o600, secret.to_key_file_text().as_bytes())?;
    let public = secret.public_key().to_string();
    if let Err(error) = write_new(&public_path, 0o644, public.as_bytes()) {
        // Leave no half pair behind: the secret is useless without its record.
        let _ = std::fs::remove_file(&secret_path);
        return Err(error);
    }
    eprintln!(
        "wrote {} (keep it secret) and {}",
        secret_path.display(),
        public_path.display()
    );
    eprintln!("trust it on a host with: key = \"{public}\"");
    eprintln!(
        "sign with it: --key {0}, or DEPLOYD_KEY_FILE={0}",
        secret_path.display()
    );
    Ok(())
}

/// `$XDG_CONFIG_HOME/deployd/keys` (an absolute `XDG_CONFIG_HOME`, as the
/// XDG base directory specification wants), else `$HOME/.config/deployd/keys`.
fn default_dir() -> Result<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let config = match (absolute("XDG_CONFIG_HOME"), absolute("HOME")) {
        (Some(config), _) => config,
        (None, Some(home)) => home.join(".config"),
        (None, None) => bail!(
            "cannot tell where the keys go: neither XDG_CONFIG_HOME nor HOME is set (to an absolute path); give --out DIR"
        ),
    };
    Ok(config.join("deployd/keys"))
}

/// Makes sure `dir` exists (created with missing parents, mode 0700) and
/// that no other user may write to it; warns when others may read it.
fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .permissions()
        .mode();
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        bail!(
            "{} is writable by other users (mode {:o}): they could replace the public key before you trust it; chmod go-w it, or give --out a private directory",
            dir.display(),
            mode & 0o7777
        );
    }
    if mode & 0o077 != 0 {
        eprintln!(
            "push: warning: {} is open to other users (mode {:o}): the secret key stays private (mode 600), but they see its name; chmod 700 it to keep keys to yourself",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Creates `path` with `mode`, failing if it exists, and syncs it to disk.
/// A file it created but could not fill is removed again.
fn write_new(path: &Path, mode: u32, contents: &[u8]) -> Result<()> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = std::fs::remove_file(path);
        return Err(error).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
