//! `push keygen NAME [--out DIR]`: a new deploy key pair, written so that the
//! secret half is private from its first byte and nothing is overwritten.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deployd_protocol::{KeyName, SecretKey};

/// Options of `push keygen`.
#[derive(clap::Args)]
pub struct KeygenOptions {
    /// The key's name, its id on the wire (for example `ops-1`).
    name: KeyName,
    /// Directory to write the two files into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// What `push keygen --help` says about its exit statuses.
pub const EXIT_HELP: &str =
    "Exit status: 0 both files written; 2 bad usage, or a file that exists or cannot be written.";

/// Generates the key and writes `NAME.secret` and `NAME.public`.
pub fn run(options: &KeygenOptions) -> Result<()> {
    let secret_path = options.out.join(format!("{}.secret", options.name));
    let public_path = options.out.join(format!("{}.public", options.name));
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
