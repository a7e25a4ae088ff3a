//! The host key: an Ed25519 key in Nix's format that a pulling host signs
//! its reports with (docs/src/design/channels.md). It is made at the first
//! start as `state_dir/host-key.secret` (mode 0600, named
//! `<hostname>-host-1`, the host name cut to its first
//! [`KEY_NAME_HOST_CHARS`] characters so that every host name makes a key
//! name), and read at every later start; its public half is
//! in `/v1/status` as `host_key`, for the operator to pin in push.toml.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use deployd_protocol::{HostName, KeyError, KeyName, SecretKey};

/// The host key's file under `state_dir`.
pub const HOST_KEY_FILE: &str = "host-key.secret";
/// The most of the host name a host key's name holds (a key name is at
/// most 128 characters; a host name may have 253).
pub const KEY_NAME_HOST_CHARS: usize = 100;

/// Why the host key can be neither read nor made.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The file exists but is not a secret key.
    #[error("{path} is not a secret key")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// `<hostname>-host-1` is not a key name.
    #[error("{0}-host-1 is not a usable key name")]
    Name(HostName),
    /// No random seed.
    #[error("cannot make a host key")]
    Generate(#[source] KeyError),
    /// Writing the new key failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the host key under `state_dir`, or makes it (0600, written whole
/// and synced before it is renamed into place).
pub fn load_or_make(state_dir: &Path, hostname: &HostName) -> Result<SecretKey, HostKeyError> {
    let path = state_dir.join(HOST_KEY_FILE);
    if path.exists() {
        return SecretKey::load(&path).map_err(|source| HostKeyError::Unreadable { path, source });
    }
    let host_part: String = hostname
        .as_str()
        .chars()
        .take(KEY_NAME_HOST_CHARS)
        .collect();
    let name: KeyName = format!("{host_part}-host-1")
        .parse()
        .map_err(|_| HostKeyError::Name(hostname.clone()))?;
    let key = SecretKey::generate(name).map_err(HostKeyError::Generate)?;
    let temporary = path.with_extension("tmp");
    let write = |source| HostKeyError::Write {
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(write)?;
    file.write_all(key.to_key_file_text().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, &path))
        .and_then(|()| std::fs::File::open(state_dir)?.sync_all())
        .map_err(write)?;
    log::info!(
        "made the host key {} ({}); pin it in push.toml as host_key",
        path.display(),
        key.public_key()
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_private_and_read_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host: HostName = "pi".parse().expect("host");
        let made = load_or_make(dir.path(), &host).expect("made");
        assert_eq!(made.name().as_str(), "pi-host-1");
        let file = dir.path().join(HOST_KEY_FILE);
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_make(dir.path(), &host).expect("read");
        assert_eq!(again.public_key(), made.public_key());
        std::fs::write(&file, "not a key").expect("write");
        assert!(matches!(
            load_or_make(dir.path(), &host),
            Err(HostKeyError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_long_host_name_still_makes_a_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let label = "a".repeat(49);
        let long = [label.as_str(); 4].join(".");
        assert_eq!(long.len(), 199);
        let host: HostName = format!("{long}b")
            .parse()
            .expect("a 200-character host name");
        let made = load_or_make(dir.path(), &host).expect("made");
        let name = made.name().as_str();
        assert!(name.len() <= 128, "{name}");
        assert_eq!(name, format!("{}-host-1", &long[..KEY_NAME_HOST_CHARS]));
    }
}
