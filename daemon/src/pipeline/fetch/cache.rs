//! One HTTP(S) binary cache, as Nix reads one (Nix:
//! src/libstore/http-binary-cache-store.cc, binary-cache-store.cc): its
//! `nix-cache-info`, `<hash>.narinfo` for each path, and the NAR file its
//! narinfo's `URL` names, relative to the cache's root unless absolute.
//! At most [`REQUESTS_IN_FLIGHT`] requests at once per cache, over HTTP/2
//! where the cache speaks it; every answer bounded and timed; failed
//! requests tried again after a pause. A cache's answers are hostile: they
//! only put files in the stage, which Nix checks before anything is valid.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use deployd_protocol::{StorePath, STORE_DIR};
use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::narinfo::{NarInfo, NarInfoError, MAX_NARINFO_BYTES};
use super::progress::Progress;

/// Requests one cache serves at once for a deploy.
pub const REQUESTS_IN_FLIGHT: usize = 64;
/// Tries of one request, the first included: a connection dropped in the
/// middle of a NAR starts it again from its beginning.
pub const TRIES: u32 = 6;
/// Redirects followed (attic answers a NAR with one to object storage).
pub const MAX_REDIRECTS: usize = 10;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a narinfo or `nix-cache-info` may take, whole.
const SMALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a NAR's answer may go without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest `nix-cache-info` read.
const MAX_CACHE_INFO_BYTES: usize = 4096;

/// Why the fast fetch stops at a cache; Nix then fetches from it itself.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A cache Nix reads but this client does not (`file://`, `s3://`, ...).
    #[error("{0} is not an http(s) cache")]
    NotHttp(String),
    /// A request failed, after its tries.
    #[error("{cache}: {what}: {cause}")]
    Request {
        /// The cache.
        cache: String,
        /// What was asked.
        what: String,
        /// Why it failed (no URL in it: a redirect's may hold a signature).
        cause: String,
    },
    /// An answer this client does not expect.
    #[error("{cache}: {what}: {problem}")]
    Unexpected {
        /// The cache.
        cache: String,
        /// What was asked.
        what: String,
        /// What was wrong.
        problem: String,
    },
    /// A narinfo that does not read.
    #[error("{cache}: {path}: {source}")]
    NarInfo {
        /// The cache.
        cache: String,
        /// The path asked for.
        path: String,
        /// Why.
        source: NarInfoError,
    },
    /// Writing a NAR into the stage failed.
    #[error("writing {path}: {source}")]
    Disk {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One configured cache.
#[derive(Debug)]
pub struct Cache {
    /// Its URL as configured (no credentials: the config refuses them).
    pub url: String,
    /// Its root, the URL without query or trailing `/`.
    root: String,
    /// Its priority (lower asked first), as Nix reads it.
    pub priority: i64,
    /// Its place in `[nix] substituters`, which orders equal priorities.
    pub order: usize,
    /// The HTTP client, shared by all caches of a deploy.
    client: reqwest::Client,
    /// Keeps this cache's requests at most [`REQUESTS_IN_FLIGHT`].
    in_flight: Semaphore,
}

/// The client for a deploy's caches: HTTP/2 or HTTP/1.1, the daemon's TLS
/// trust (the system's roots), redirects followed, timeouts.
pub fn client(tls: rustls::ClientConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent("deployd")
        .build()
        .map_err(|error| format!("cannot set up the HTTP client: {}", without_url(error)))
}

impl Cache {
    /// Reads the `nix-cache-info` of the cache at `url` (the `order`th
    /// configured).
    pub async fn open(
        client: reqwest::Client,
        url: &str,
        order: usize,
    ) -> Result<Cache, CacheError> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(CacheError::NotHttp(url.to_owned()));
        }
        let (root, query) = url.split_once('?').unwrap_or((url, ""));
        let mut cache = Cache {
            url: url.to_owned(),
            root: root.trim_end_matches('/').to_owned(),
            priority: 0,
            order,
            client,
            in_flight: Semaphore::new(REQUESTS_IN_FLIGHT),
        };
        cache.priority = match remembered_priority(url) {
            Some(priority) => priority,
            None => {
                let priority = cache.read_cache_info().await?;
                remember_priority(url, priority);
                priority
            }
        };
        // Nix: src/libstore/store-api.cc, a store URL's `?priority=` wins
        // over its nix-cache-info.
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            if key == "priority" {
                if let Ok(priority) = value.parse() {
                    cache.priority = priority;
                }
            }
        }
        Ok(cache)
    }

    /// The `Priority` of the cache's `nix-cache-info` (0 when it names
    /// none), which must be for this store directory.
    async fn read_cache_info(&self) -> Result<i64, CacheError> {
        let what = "nix-cache-info";
        // Asked once: a cache that does not answer at once is left to Nix,
        // rather than waited for through every try.
        let info = self
            .get_small(what, MAX_CACHE_INFO_BYTES, 1)
            .await?
            .ok_or_else(|| self.unexpected(what, "not there".into()))?;
        let info = String::from_utf8_lossy(&info);
        let (priority, store_dir) = read_cache_info(&info);
        // Nix: src/libstore/binary-cache-store.cc refuses a cache for
        // another store directory.
        if let Some(dir) = store_dir {
            if dir != STORE_DIR {
                return Err(self.unexpected(what, format!("it is for the store {dir}")));
            }
        }
        Ok(priority.unwrap_or(0))
    }

    /// The narinfo of `path`, or `None` when the cache does not have it
    /// (404, 410, or 403 as an S3 website answers).
    pub async fn narinfo(&self, path: &StorePath) -> Result<Option<NarInfo>, CacheError> {
        let what = format!("{}.narinfo", path.hash_part());
        let Some(bytes) = self.get_small(&what, MAX_NARINFO_BYTES, TRIES).await? else {
            return Ok(None);
        };
        NarInfo::parse(path, &bytes)
            .map(Some)
            .map_err(|source| CacheError::NarInfo {
                cache: self.url.clone(),
                path: path.to_string(),
                source,
            })
    }

    /// Downloads `info`'s NAR file to `file` as served (no decompression),
    /// at most [`NarInfo::download_limit`] bytes; a transfer cut midway is
    /// started again, and said so in `progress`.
    pub async fn download_nar(
        &self,
        info: &NarInfo,
        file: &Path,
        progress: &Progress,
    ) -> Result<u64, CacheError> {
        let what = format!("the NAR of {}", info.store_path.name());
        // Nix: src/libstore/http-binary-cache-store.cc, an absolute URL
        // is fetched as it is; any other is relative to the cache's root.
        let url = if info.url.starts_with("http://") || info.url.starts_with("https://") {
            info.url.clone()
        } else if info.url.contains("://") {
            return Err(self.unexpected(&what, "its URL is not http(s)".into()));
        } else {
            format!("{}/{}", self.root, info.url.trim_start_matches('/'))
        };
        let limit = info.download_limit();
        let _slot = self.in_flight.acquire().await.expect("never closed");
        let mut tries = 0;
        loop {
            tries += 1;
            let mut written: u64 = 0;
            let result = self
                .download_once(&url, file, limit, &mut written, progress)
                .await;
            match result {
                Ok(()) => {
                    if let Some(size) = info.file_size {
                        if written != size {
                            return Err(self.unexpected(
                                &what,
                                format!("{written} bytes where its narinfo says {size}"),
                            ));
                        }
                    }
                    return Ok(written);
                }
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Again(cause)) => {
                    progress.bytes_undone(written);
                    if tries >= TRIES {
                        return Err(self.failed(&what, cause, tries));
                    }
                    progress.note(format!(
                        "deployd: {}: {what}: {cause}; trying again ({tries} of {TRIES} tries made)",
                        self.url
                    ));
                    tokio::time::sleep(backoff(tries)).await;
                }
            }
        }
    }

    async fn download_once(
        &self,
        url: &str,
        file: &Path,
        limit: u64,
        written: &mut u64,
        progress: &Progress,
    ) -> Result<(), Attempt> {
        let answer = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|error| Attempt::Again(without_url(error)))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(retry_or_not(status, || {
                self.unexpected("a NAR", format!("answered {status}"))
            }));
        }
        if answer.content_length().is_some_and(|length| length > limit) {
            return Err(Attempt::Final(self.too_large(limit)));
        }
        let disk = |source| {
            Attempt::Final(CacheError::Disk {
                path: file.display().to_string(),
                source,
            })
        };
        let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(file).await.map_err(disk)?);
        let mut body = answer.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| Attempt::Again(without_url(error)))?;
            *written += chunk.len() as u64;
            if *written > limit {
                return Err(Attempt::Final(self.too_large(limit)));
            }
            out.write_all(&chunk).await.map_err(disk)?;
            progress.bytes_done(chunk.len() as u64);
        }
        // Flushed, not synced: the stage is temporary (removed once Nix
        // has realised the system, and a stage a crash left behind is
        // discarded, never read again), and Nix copies what it unpacks into
        // the store with its own durability, so an fsync per NAR would only
        // cost time.
        out.flush().await.map_err(disk)?;
        Ok(())
    }

    /// GETs `name` (relative to the root), at most `limit` bytes; `None`
    /// for an answer that says it is not there. At most `most_tries` tries.
    async fn get_small(
        &self,
        name: &str,
        limit: usize,
        most_tries: u32,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        let url = format!("{}/{name}", self.root);
        let _slot = self.in_flight.acquire().await.expect("never closed");
        let mut tries = 0;
        loop {
            tries += 1;
            match self.get_small_once(&url, name, limit).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Again(cause)) if tries >= most_tries => {
                    return Err(self.failed(name, cause, tries))
                }
                Err(Attempt::Again(_)) => tokio::time::sleep(backoff(tries)).await,
            }
        }
    }

    async fn get_small_once(
        &self,
        url: &str,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, Attempt> {
        let exchange = async {
            let answer = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|error| Attempt::Again(without_url(error)))?;
            let status = answer.status();
            // Nix: src/libstore/http-binary-cache-store.cc takes 404, 410
            // and 403 (S3) as "not there".
            if matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::FORBIDDEN
            ) {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(retry_or_not(status, || {
                    self.unexpected(name, format!("answered {status}"))
                }));
            }
            let mut bytes = Vec::new();
            let mut body = answer.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| Attempt::Again(without_url(error)))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(Attempt::Final(
                        self.unexpected(name, format!("longer than {limit} bytes")),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(bytes))
        };
        tokio::time::timeout(SMALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Attempt::Again(format!(
                    "no answer within {SMALL_TIMEOUT:?}"
                )))
            })
    }

    fn unexpected(&self, what: &str, problem: String) -> CacheError {
        CacheError::Unexpected {
            cache: self.url.clone(),
            what: what.to_owned(),
            problem,
        }
    }

    /// A NAR answer longer than the `limit` its narinfo allows.
    fn too_large(&self, limit: u64) -> CacheError {
        self.unexpected(
            "a NAR",
            format!("it is larger than the {limit} bytes its narinfo allows"),
        )
    }

    fn failed(&self, what: &str, cause: String, tries: u32) -> CacheError {
        let cause = if tries > 1 {
            format!("{cause} (after {tries} tries)")
        } else {
            cause
        };
        CacheError::Request {
            cache: self.url.clone(),
            what: what.to_owned(),
            cause,
        }
    }
}

/// A request's failure: worth trying again, or not.
enum Attempt {
    /// A dropped connection, a timeout, a 5xx or 429.
    Again(String),
    /// Anything else.
    Final(CacheError),
}

fn retry_or_not(status: StatusCode, error: impl FnOnce() -> CacheError) -> Attempt {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Attempt::Again(format!("answered {status}"))
    } else {
        Attempt::Final(error())
    }
}

/// The pause before try `tries + 1`: 250 ms doubling, at most 2 s.
fn backoff(tries: u32) -> Duration {
    Duration::from_millis(250 << tries.min(4).saturating_sub(1))
}

/// A reqwest error with its causes, without its URL (a redirect's may
/// carry a presigned signature).
fn without_url(error: reqwest::Error) -> String {
    crate::api::chain(&error.without_url())
}

/// The `nix-cache-info` priorities read so far, by cache URL, kept for
/// the daemon's life: a cache's `nix-cache-info` rarely changes, and Nix
/// itself keeps it for 7 days (Nix: src/libstore/nar-info-disk-cache.cc,
/// `cacheInfoTtl`); a restarted daemon reads it again. Only a cache that
/// answered well is remembered, so one that failed is asked again at the
/// next deploy. It holds one entry per URL ever configured.
fn remembered_priorities() -> &'static Mutex<HashMap<String, i64>> {
    static PRIORITIES: OnceLock<Mutex<HashMap<String, i64>>> = OnceLock::new();
    PRIORITIES.get_or_init(Mutex::default)
}

fn remembered_priority(url: &str) -> Option<i64> {
    remembered_priorities()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(url)
        .copied()
}

fn remember_priority(url: &str, priority: i64) {
    remembered_priorities()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(url.to_owned(), priority);
}

/// `Priority` and `StoreDir` of a `nix-cache-info` (Nix:
/// src/libstore/binary-cache-store.cc reads `Key: value` lines).
pub fn read_cache_info(text: &str) -> (Option<i64>, Option<&str>) {
    let mut priority = None;
    let mut store_dir = None;
    for line in text.lines() {
        match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("Priority", value)) => priority = value.parse().ok(),
            Some(("StoreDir", value)) => store_dir = Some(value),
            _ => {}
        }
    }
    (priority, store_dir)
}

/// The order Nix asks caches in: lower priority first, then as configured
/// (Nix: src/libstore/store-api.cc sorts the substituters by priority).
pub fn in_priority_order(caches: &mut [Cache]) {
    caches.sort_by_key(|cache| (cache.priority, cache.order));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_info() {
        assert_eq!(
            read_cache_info("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"),
            (Some(40), Some("/nix/store"))
        );
        assert_eq!(
            read_cache_info("StoreDir: /gnu/store\n"),
            (None, Some("/gnu/store"))
        );
        assert_eq!(read_cache_info(""), (None, None));
    }

    #[test]
    fn priority_order_then_config_order() {
        let client = reqwest::Client::new();
        let cache = |url: &str, priority, order| Cache {
            url: url.into(),
            root: url.into(),
            priority,
            order,
            client: client.clone(),
            in_flight: Semaphore::new(1),
        };
        let mut caches = vec![
            cache("http://a", 40, 0),
            cache("http://b", 30, 1),
            cache("http://c", 40, 2),
            cache("http://d", 0, 3),
        ];
        in_priority_order(&mut caches);
        let urls: Vec<&str> = caches.iter().map(|cache| cache.url.as_str()).collect();
        assert_eq!(urls, ["http://d", "http://b", "http://a", "http://c"]);
    }

    #[test]
    fn backoff_grows_and_stops() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(2000));
        assert_eq!(backoff(9), Duration::from_millis(2000));
    }
}
