//! Where `push publish` writes: a channel, one of three kinds behind one
//! enum (docs/src/design/channels.md). Each holds, per host, the newest
//! signed desired state at `hosts/<host>.json`, and each reads it back the
//! same way:
//!
//! - `file:///dir`: a folder (served by nginx or any static server);
//!   written to a temporary file, synced, renamed into place (mode 0644), so
//!   a reader sees the old state or the new one, never half of one;
//! - `s3://bucket/prefix`: an S3 bucket or any S3-compatible store, through
//!   the `object_store` crate (see [`super::s3`]);
//! - `http(s)://SERVE/v1/channel`: push serve's channel API (see
//!   [`super::serve_channel`]).
//!
//! The channel is never trusted: what it holds is read only to choose the
//! next sequence and to refuse a downgrade (see [`super::held`]); hosts
//! verify what they read themselves.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::{HostName, Nonce, MAX_ENVELOPE_BYTES};

use super::s3::S3Channel;
use super::serve_channel::ServeChannel;
use crate::tls::Trust;

/// A channel to publish to.
pub enum Channel {
    /// A folder on this machine.
    Folder(PathBuf),
    /// An S3 bucket (or S3-compatible store) and a prefix in it.
    S3(S3Channel),
    /// push serve's channel API.
    Serve(ServeChannel),
}

/// What a write came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The channel holds the new state.
    Done,
    /// push serve refused it as `replayed`: it holds a state with this
    /// sequence or a higher one, published meanwhile by someone else.
    Replayed(String),
}

/// The object of `host`'s state, relative to the channel:
/// `hosts/<host>.json`.
pub fn state_key(host: &HostName) -> String {
    format!("hosts/{host}.json")
}

impl Channel {
    /// The channel at `url`: `file:///dir`, `s3://bucket/prefix[?...]` or
    /// `http(s)://SERVE/v1/channel` (reached trusting `trust`). A URL with
    /// credentials in it is refused: they would show in push's output.
    pub fn open(url: &str, trust: &Trust) -> Result<Channel> {
        if let Some(credentials) = url_credentials(url) {
            bail!(
                "the channel {:?} has a {} in it; credentials never go in a URL (push shows it in its output): {}",
                mask_credentials(url),
                if credentials.has_password { "password" } else { "user name" },
                credentials.where_they_go()
            );
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                bail!("the channel {url:?}: a folder is file:///ABSOLUTE/PATH");
            }
            return Ok(Channel::Folder(PathBuf::from(path)));
        }
        if url.starts_with("s3://") {
            return Ok(Channel::S3(S3Channel::open(url)?));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Channel::Serve(ServeChannel::open(url, trust)?));
        }
        bail!("the channel {url:?}: push publish writes to file:///DIR, s3://BUCKET/PREFIX or push serve's http(s)://SERVE/v1/channel")
    }

    /// The state the channel holds for `host`, as bytes (at most
    /// [`MAX_ENVELOPE_BYTES`]); `None` when it holds none.
    pub async fn read(&self, host: &HostName) -> Result<Option<Vec<u8>>> {
        match self {
            Channel::Folder(dir) => {
                let path = dir.join(state_key(host));
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .context("the reading task failed")?
            }
            Channel::S3(s3) => s3.read(host).await,
            Channel::Serve(serve) => serve.read(host).await,
        }
    }

    /// Writes `envelope` as `host`'s state.
    pub async fn write(&self, host: &HostName, envelope: Vec<u8>) -> Result<Written> {
        match self {
            Channel::Folder(dir) => {
                let dir = dir.clone();
                let key = state_key(host);
                tokio::task::spawn_blocking(move || write_file(&dir, &key, &envelope))
                    .await
                    .context("the writing task failed")??;
                Ok(Written::Done)
            }
            Channel::S3(s3) => s3.write(host, envelope).await.map(|()| Written::Done),
            Channel::Serve(serve) => serve.write(host, envelope).await,
        }
    }
}

/// The file at `path`, `None` when there is none; larger than an envelope
/// may be is an error.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    check_size(&bytes, &path.display().to_string())?;
    Ok(Some(bytes))
}

/// Fails when `bytes` (read from `what`) are longer than any envelope.
pub fn check_size(bytes: &[u8], what: &str) -> Result<()> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        bail!("{what} is larger than any desired state ({MAX_ENVELOPE_BYTES} bytes at most)");
    }
    Ok(())
}

/// Writes `bytes` to `dir/key` atomically: a temporary file beside it,
/// synced, made 0644 (the static server reads it), renamed into place,
/// then the folder synced.
fn write_file(dir: &Path, key: &str, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let path = dir.join(key);
    let folder = path.parent().context("a state's path has a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let random = Nonce::generate().context("no randomness")?;
    let name = path.file_name().context("a state's path has a name")?;
    let temporary = folder.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        &random.as_str()[..12]
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)?;
        file.write_all(bytes)?;
        // Whatever the umask, the static server must be able to read it.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_holds_each_hosts_newest_state_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}/channel", dir.path().display());
        let channel = Channel::open(&url, &Trust::default()).expect("open");
        let host: HostName = "pi".parse().expect("host");
        assert_eq!(channel.read(&host).await.expect("read"), None);
        for body in [&b"one"[..], b"two"] {
            let written = channel.write(&host, body.to_vec()).await.expect("write");
            assert_eq!(written, Written::Done);
        }
        assert_eq!(
            channel.read(&host).await.expect("read").as_deref(),
            Some(&b"two"[..])
        );
        let path = dir.path().join("channel/hosts/pi.json");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("channel/hosts"))
            .expect("folder")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["pi.json"], "no temporary file is left");

        std::fs::write(&path, vec![b'x'; MAX_ENVELOPE_BYTES + 1]).expect("huge");
        let error = channel.read(&host).await.expect_err("too large");
        assert!(format!("{error:#}").contains("larger than any desired state"));
    }

    #[test]
    fn channel_urls_are_checked() {
        let trust = Trust::default();
        for bad in [
            "file://relative/dir",
            "ftp://example.org/channel",
            "https://ops:hunter2@deploy.example.org/v1/channel",
            "/srv/channel",
        ] {
            let error = Channel::open(bad, &trust).err().expect(bad).to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert!(matches!(
            Channel::open("file:///srv/channel", &trust),
            Ok(Channel::Folder(path)) if path == Path::new("/srv/channel")
        ));
    }
}
