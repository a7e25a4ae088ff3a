//! Which deploy key signs: `--key`, else `DEPLOYD_KEY_FILE`, else the
//! inventory's `key_file` (relative to the flake's root). The file is a
//! Nix-format secret key, or an SSH public key or certificate whose secret
//! half `ssh-agent` holds.
//!
//! A secret key file inside the flake's git work tree that git does not
//! ignore is one `git add -A` away from the Nix store, which every user of
//! the machine (and every machine it is copied to) can read: push warns
//! ([`exposure_warnings`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deployd_protocol::{pre_authentication_encoding, Envelope, SecretKey};
use zeroize::Zeroizing;

use crate::agent::{is_ssh_public_text, AgentKey};
use crate::inventory::Inventory;
use crate::revision::{Exposure, FlakeRepository};

/// The environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "DEPLOYD_KEY_FILE";
/// The largest key file read: a certificate with many principals fits.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A deploy key: a secret key file, or a key `ssh-agent` holds.
#[derive(Clone, Debug)]
pub enum DeployKey {
    /// A Nix-format secret key: signs each host's message on its own.
    File(Arc<SecretKey>),
    /// An SSH key or certificate in the agent: signs a rollout's messages
    /// once for all its hosts.
    Agent(AgentKey),
}

impl DeployKey {
    /// Signs `payload` of `payload_type` into an envelope's JSON. With the
    /// agent this is blocking I/O (and may wait for a touch): call it off
    /// the async runtime's threads.
    pub fn sign(&self, payload_type: &str, payload: Vec<u8>) -> Result<Vec<u8>> {
        match self {
            DeployKey::File(key) => Ok(Envelope::sign(payload_type, payload, &[key]).to_json()),
            DeployKey::Agent(agent) => {
                let pae = pre_authentication_encoding(payload_type, &payload);
                let signature = agent.sign(&pae)?;
                Ok(Envelope::new(payload_type, payload, vec![signature]).to_json())
            }
        }
    }

    /// The key that signs reads, for hosts that require signed reads: a
    /// file key. Reads are not signed through the agent, which would ask
    /// a security key for a touch per request.
    pub fn reader(&self) -> Option<Arc<SecretKey>> {
        match self {
            DeployKey::File(key) => Some(key.clone()),
            DeployKey::Agent(_) => None,
        }
    }
}

/// The key that signs reads, when a file key is configured
/// (`DEPLOYD_KEY_FILE` or the inventory's `key_file`): hosts that require
/// signed reads need it.
/// Warns when that file lies where git would take it into the Nix store.
pub fn reading_key(inventory: &Inventory) -> Result<Option<Arc<SecretKey>>> {
    let Some(path) = key_file_path(None, inventory) else {
        return Ok(None);
    };
    if read_head(&path).is_ok_and(|head| is_ssh_public_text(&head)) {
        // An SSH key signs no reads, and reads need no agent.
        return Ok(None);
    }
    let key = load(&path)?.reader();
    for warning in exposure_warnings(inventory, &[("deploy key", path)]) {
        eprintln!("push: warning: {warning}");
    }
    Ok(key)
}

/// Loads the deploy key.
pub fn signing_key(option: Option<&Path>, inventory: &Inventory) -> Result<DeployKey> {
    let Some(path) = key_file_path(option, inventory) else {
        bail!("no deploy key: give --key FILE, set {KEY_FILE_ENV}, or set key_file in push.toml");
    };
    load(&path)
}

/// The deploy key's file: `--key` (`option`), else `DEPLOYD_KEY_FILE`, else
/// push.toml's `key_file` (relative to the flake's root).
pub fn key_file_path(option: Option<&Path>, inventory: &Inventory) -> Option<PathBuf> {
    match (
        option,
        std::env::var_os(KEY_FILE_ENV),
        &inventory.defaults.key_file,
    ) {
        (Some(path), _, _) => Some(path.to_owned()),
        (None, Some(path), _) => Some(PathBuf::from(path)),
        (None, None, Some(path)) => Some(inventory.root().join(path)),
        (None, None, None) => None,
    }
}

/// One line for each secret key file of `files` (what it is, where) that
/// lies inside the flake's git work tree where git does not ignore it. An
/// SSH public key or certificate is no secret: it is never named.
pub fn exposure_warnings(inventory: &Inventory, files: &[(&str, PathBuf)]) -> Vec<String> {
    let Ok(repository) = FlakeRepository::open(inventory.root()) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for (what, path) in files {
        if read_head(path).is_ok_and(|head| is_ssh_public_text(&head)) {
            continue;
        }
        let how = match repository.exposure(path) {
            None => continue,
            Some(Exposure::Committed) => {
                "is committed to the flake's git repository: every build copies it into the world-readable Nix store (remove it from the repository and make a new key)"
            }
            Some(Exposure::NotIgnored) => {
                "lies inside the flake's git work tree and git does not ignore it: `git add -A` would put it in the world-readable Nix store (keep it outside the repository, or list it in .gitignore)"
            }
        };
        warnings.push(format!("the {what} {} {how}", path.display()));
    }
    warnings
}

/// Reads the key file: SSH public key or certificate, else Nix-format secret.
fn load(path: &Path) -> Result<DeployKey> {
    let context = || format!("cannot use the deploy key {}", path.display());
    let head = read_head(path).with_context(context)?;
    if head.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        bail!(
            "{} is an SSH private key: give its public key (.pub) or certificate (-cert.pub); push signs through ssh-agent",
            path.display()
        );
    }
    if is_ssh_public_text(&head) {
        return Ok(DeployKey::Agent(
            AgentKey::from_public_text(path, &head).with_context(context)?,
        ));
    }
    drop(head);
    Ok(DeployKey::File(Arc::new(
        SecretKey::load(path).with_context(context)?,
    )))
}

/// The key file's text, in a buffer wiped on drop (it may be a secret key).
fn read_head(path: &Path) -> std::io::Result<Zeroizing<String>> {
    let mut head = Zeroizing::new(String::new());
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_git::git;

    #[test]
    fn secret_keys_git_could_take_into_the_store_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical");
        git(&root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join(".gitignore"), "/ignored/\n").expect("ignore");
        std::fs::write(root.join("committed.secret"), "k").expect("key");
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "one"]);
        std::fs::create_dir(root.join("ignored")).expect("dir");
        std::fs::write(root.join("ignored/ops.secret"), "k").expect("key");
        std::fs::write(root.join("cache.secret"), "k").expect("key");
        std::fs::write(
            root.join("id_ed25519.pub"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGHBq2Xc4Hf1kqoRsPM2TTvEc5wAS9p2kE9iD4c6ySmP alice\n",
        )
        .expect("public key");
        std::fs::write(root.join(crate::inventory::INVENTORY_FILE), "").expect("push.toml");
        let inventory = Inventory::load(&root).expect("inventory");

        let warnings = exposure_warnings(
            &inventory,
            &[
                ("deploy key", root.join("committed.secret")),
                ("cache signing key", root.join("cache.secret")),
                ("deploy key", root.join("ignored/ops.secret")),
                ("deploy key", root.join("id_ed25519.pub")),
                ("deploy key", std::env::temp_dir().join("elsewhere.secret")),
            ],
        );
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].starts_with(&format!(
                "the deploy key {} is committed to the flake's git repository",
                root.join("committed.secret").display()
            )),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(&format!(
                "the cache signing key {} lies inside the flake's git work tree and git does not ignore it: `git add -A` would put it in the world-readable Nix store",
                root.join("cache.secret").display()
            )),
            "{}",
            warnings[1]
        );
    }
}
