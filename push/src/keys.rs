//! Which deploy key signs: `--key`, else `DEPLOYD_KEY_FILE`, else the
//! inventory's `key_file` (relative to the flake's root).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deployd_protocol::SecretKey;

use crate::inventory::Inventory;

/// The environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "DEPLOYD_KEY_FILE";

/// The key that signs reads, when one is configured (`DEPLOYD_KEY_FILE` or
/// the inventory's `key_file`): hosts that require signed reads need it.
pub fn reading_key(
    inventory: &Inventory,
    flake_dir: &Path,
) -> Result<Option<std::sync::Arc<SecretKey>>> {
    let configured =
        std::env::var_os(KEY_FILE_ENV).is_some() || inventory.defaults.key_file.is_some();
    if !configured {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(signing_key(
        None, inventory, flake_dir,
    )?)))
}

/// Loads the deploy key.
pub fn signing_key(
    option: Option<&Path>,
    inventory: &Inventory,
    flake_dir: &Path,
) -> Result<SecretKey> {
    let path: PathBuf = match (
        option,
        std::env::var_os(KEY_FILE_ENV),
        &inventory.defaults.key_file,
    ) {
        (Some(path), _, _) => path.to_owned(),
        (None, Some(path), _) => PathBuf::from(path),
        (None, None, Some(path)) => flake_dir.join(path),
        (None, None, None) => anyhow::bail!(
            "no deploy key: give --key FILE, set {KEY_FILE_ENV}, or set key_file in push.toml"
        ),
    };
    let key = SecretKey::load(&path)
        .with_context(|| format!("cannot use the deploy key {}", path.display()))?;
    Ok(key)
}
