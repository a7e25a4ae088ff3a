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
//! A write replaces only the state read (a [`Stored`]): a folder checks
//! under an exclusive lock on `hosts/.lock` that the file still holds it, an
//! S3 store writes on the condition that the object's e-tag is still the
//! one read (none: that there is no object yet), and push serve refuses a
//! sequence not above the one it holds. Otherwise the write is
//! [`Written::Replayed`]: someone published meanwhile, and push publish
//! reads again, checks the descent again and retries once.
//!
//! The channel is never trusted: what it holds is read only to choose the
//! next sequence and to refuse a downgrade (see [`super::held`]); hosts
//! verify what they read themselves.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::{HostName, Nonce, MAX_ENVELOPE_BYTES};
use object_store::UpdateVersion;

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
    /// The channel no longer holds the state read (push serve: it holds
    /// one with this sequence or a higher one): someone else published
    /// meanwhile. Nothing was written.
    Replayed(String),
}

/// A host's state as read from a channel: what a write that replaces it
/// must still find there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The envelope.
    pub bytes: Vec<u8>,
    /// In an S3 store, the object's e-tag and version.
    pub version: Option<UpdateVersion>,
}

impl From<Vec<u8>> for Stored {
    fn from(bytes: Vec<u8>) -> Stored {
        Stored {
            bytes,
            version: None,
        }
    }
}

/// How long a folder's write waits for another `push publish` to let go
/// of its lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

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

    /// The state the channel holds for `host` (at most
    /// [`MAX_ENVELOPE_BYTES`]); `None` when it holds none.
    pub async fn read(&self, host: &HostName) -> Result<Option<Stored>> {
        match self {
            Channel::Folder(dir) => {
                let path = dir.join(state_key(host));
                let read = tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .context("the reading task failed")??;
                Ok(read.map(Stored::from))
            }
            Channel::S3(s3) => s3.read(host).await,
            Channel::Serve(serve) => Ok(serve.read(host).await?.map(Stored::from)),
        }
    }

    /// Writes `envelope` as `host`'s state, in place of `replaces` (what
    /// was read; `None`: nothing was held), unless the channel holds
    /// another state by now ([`Written::Replayed`]).
    pub async fn write(
        &self,
        host: &HostName,
        envelope: Vec<u8>,
        replaces: Option<&Stored>,
    ) -> Result<Written> {
        match self {
            Channel::Folder(dir) => {
                let dir = dir.clone();
                let key = state_key(host);
                let replaces = replaces.map(|stored| stored.bytes.clone());
                tokio::task::spawn_blocking(move || {
                    write_file_in_place_of(&dir, &key, &envelope, replaces.as_deref())
                })
                .await
                .context("the writing task failed")?
            }
            Channel::S3(s3) => s3.write(host, envelope, replaces).await,
            Channel::Serve(serve) => serve.write(host, envelope).await,
        }
    }
}

/// Writes `bytes` to `dir/key` if the file still holds `replaces` (`None`:
/// there is no file), checked and written under an exclusive lock on the
/// folder's `.lock` file, so that two publishes never both write the state
/// after the same one.
fn write_file_in_place_of(
    dir: &Path,
    key: &str,
    bytes: &[u8],
    replaces: Option<&[u8]>,
) -> Result<Written> {
    let path = dir.join(key);
    let folder = path.parent().context("a state's path has a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let _locked = lock_folder(folder)?;
    let held = read_file(&path)?;
    if held.as_deref() != replaces {
        return Ok(Written::Replayed(format!(
            "{} changed since it was read",
            path.display()
        )));
    }
    write_file(dir, key, bytes)?;
    Ok(Written::Done)
}

/// An exclusive lock on `folder/.lock` (released when the file is
/// dropped), waited for at most [`LOCK_WAIT`].
fn lock_folder(folder: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;

    let path = folder.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "{} is held by another push publish for over {}s",
                path.display(),
                LOCK_WAIT.as_secs()
            ),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()))
            }
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
            let held = channel.read(&host).await.expect("read");
            let written = channel.write(&host, body.to_vec(), held.as_ref());
            assert_eq!(written.await.expect("write"), Written::Done);
        }
        assert_eq!(
            channel
                .read(&host)
                .await
                .expect("read")
                .map(|held| held.bytes),
            Some(b"two".to_vec())
        );
        let path = dir.path().join("channel/hosts/pi.json");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("channel/hosts"))
            .expect("folder")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, [".lock", "pi.json"], "no temporary file is left");

        std::fs::write(&path, vec![b'x'; MAX_ENVELOPE_BYTES + 1]).expect("huge");
        let error = channel.read(&host).await.expect_err("too large");
        assert!(format!("{error:#}").contains("larger than any desired state"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn publishes_to_a_folder_never_both_write_the_state_after_the_same_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}/channel", dir.path().display());
        let channel = std::sync::Arc::new(Channel::open(&url, &Trust::default()).expect("open"));
        let host: HostName = "pi".parse().expect("host");
        let first = channel.write(&host, b"one".to_vec(), None).await;
        assert_eq!(first.expect("write"), Written::Done);
        let read = channel.read(&host).await.expect("read").expect("held");
        // Eight publishes that all read "one" write at once: one of them.
        let writes = (0..8).map(|n| {
            let (channel, host, read) = (channel.clone(), host.clone(), read.clone());
            tokio::spawn(async move {
                let body = format!("two from {n}").into_bytes();
                channel.write(&host, body, Some(&read)).await
            })
        });
        let written: Vec<Written> = futures_util::future::join_all(writes)
            .await
            .into_iter()
            .map(|joined| joined.expect("task").expect("write"))
            .collect();
        let done = written.iter().filter(|w| **w == Written::Done).count();
        assert_eq!(done, 1, "{written:?}");
        let held = channel.read(&host).await.expect("read").expect("held");
        assert!(held.bytes.starts_with(b"two from "));
        // One that read nothing does not replace what is held either.
        let late = channel.write(&host, b"first?".to_vec(), None).await;
        assert!(matches!(late, Ok(Written::Replayed(_))), "{late:?}");
        assert_eq!(
            channel.read(&host).await.expect("read").expect("held"),
            held
        );
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
