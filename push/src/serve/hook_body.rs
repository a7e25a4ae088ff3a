//! A webhook's body, read only once the cheap checks have passed (the
//! route, the signature header, the announced length: see `api.rs`) and
//! only a few at a time, so that slow or large bodies cannot fill the
//! service's memory before a single signature has been checked.
//!
//! - The `Content-Length` must be announced (`411` without it: forges send
//!   it) and at most [`MAX_HOOK_BYTES`] (`413` at once, before any byte).
//! - A body announced at most [`BodyLimits::small_bytes`] (64 KiB, what a
//!   push payload nearly always is) is read at once: their total is bounded
//!   by the accept loop's connection limit (512 × 64 KiB = 32 MiB), and a
//!   forge's small hook never waits behind large ones.
//! - A larger body waits for one of [`BodyLimits::large_slots`] reading
//!   slots (4 × 5 MiB = 20 MiB read at once), at most
//!   [`BodyLimits::slot_wait`]; then `503` with `Retry-After`. Waiting in
//!   the service rather than in the kernel's backlog keeps the connection
//!   bound for the requests behind (the status page, the small hooks), and a
//!   wait that ends in an answer tells the sender what happened.
//! - Every body must arrive whole within [`BodyLimits::read_timeout`]
//!   (`408`): a slow sender holds a slot no longer than that.
//! - A body is read into one buffer of its announced length, never grown.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

/// The largest hook body taken (forges cap theirs at 25 MB; a push payload
/// of a fleet repository is far smaller).
pub const MAX_HOOK_BYTES: usize = 5 * 1024 * 1024;

/// How bodies are read.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest body taken.
    pub max_bytes: usize,
    /// Bodies up to this size are read without waiting for a slot.
    pub small_bytes: usize,
    /// Larger bodies read at once.
    pub large_slots: usize,
    /// How long a larger body waits for a slot before `503`.
    pub slot_wait: Duration,
    /// How long a body may take to arrive, from its first byte read.
    pub read_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_bytes: MAX_HOOK_BYTES,
            small_bytes: 64 * 1024,
            large_slots: 4,
            slot_wait: Duration::from_secs(5),
            // 5 MiB in 10 s is 512 KiB/s: any forge on a working network.
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a body was not read, or not whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// No `Content-Length` (a chunked body, say).
    #[error("a hook must announce its length (Content-Length)")]
    LengthRequired,
    /// A `Content-Length` that is not a number.
    #[error("the hook's Content-Length is not a number")]
    UnreadableLength,
    /// More than [`BodyLimits::max_bytes`] announced.
    #[error("hooks are at most {max} bytes; this one announced {announced}")]
    TooLarge {
        /// What the hook announced.
        announced: u64,
        /// The limit.
        max: usize,
    },
    /// Every slot stayed taken for [`BodyLimits::slot_wait`].
    #[error("too many large hooks are being read; try again in {}s", retry_after.as_secs())]
    Busy {
        /// What `Retry-After` says.
        retry_after: Duration,
    },
    /// The body did not arrive whole within [`BodyLimits::read_timeout`].
    #[error("the hook's body did not arrive within {0:?}")]
    TimedOut(Duration),
    /// The connection failed while the body was read.
    #[error("the hook's body could not be read")]
    Read(#[source] axum::Error),
    /// The body ended before, or went on after, its announced length.
    #[error("the hook's body is {received} bytes, not the {announced} announced")]
    WrongLength {
        /// What was announced.
        announced: usize,
        /// What came (as far as it was read).
        received: usize,
    },
}

/// Reads hook bodies within [`BodyLimits`].
#[derive(Debug)]
pub struct BodyReader {
    limits: BodyLimits,
    /// The slots for bodies over `small_bytes`: with `max_bytes` each, they
    /// bound the memory bodies take while read.
    large: Semaphore,
}

impl BodyReader {
    /// A reader within `limits`.
    pub fn new(limits: BodyLimits) -> BodyReader {
        BodyReader {
            large: Semaphore::new(limits.large_slots),
            limits,
        }
    }

    /// The length the request announces, if it is one this reader takes.
    pub fn announced_length(&self, headers: &HeaderMap) -> Result<usize, BodyError> {
        let value = headers
            .get(header::CONTENT_LENGTH)
            .ok_or(BodyError::LengthRequired)?;
        let announced: u64 = value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(BodyError::UnreadableLength)?;
        match usize::try_from(announced) {
            Ok(length) if length <= self.limits.max_bytes => Ok(length),
            _ => Err(BodyError::TooLarge {
                announced,
                max: self.limits.max_bytes,
            }),
        }
    }

    /// Reads `body`, announced as `length` bytes (from
    /// [`BodyReader::announced_length`]): small ones at once, larger ones
    /// in a slot.
    pub async fn read(&self, body: Body, length: usize) -> Result<Vec<u8>, BodyError> {
        if length <= self.limits.small_bytes {
            return self.read_within_timeout(body, length).await;
        }
        let _slot = match tokio::time::timeout(self.limits.slot_wait, self.large.acquire()).await {
            Ok(Ok(slot)) => slot,
            // Closed never happens (the semaphore is never closed); a wait
            // that ends is the same answer.
            Ok(Err(_)) | Err(_) => {
                return Err(BodyError::Busy {
                    retry_after: self.limits.read_timeout,
                })
            }
        };
        self.read_within_timeout(body, length).await
    }

    async fn read_within_timeout(&self, body: Body, length: usize) -> Result<Vec<u8>, BodyError> {
        let timeout = self.limits.read_timeout;
        tokio::time::timeout(timeout, read_exactly(body, length))
            .await
            .map_err(|_| BodyError::TimedOut(timeout))?
    }
}

/// Reads `body` into one buffer of `length` bytes; a body that ends
/// earlier or goes on longer is refused (the HTTP layer already holds the
/// peer to its `Content-Length`; this holds the buffer to it too).
async fn read_exactly(body: Body, length: usize) -> Result<Vec<u8>, BodyError> {
    let mut buffer = Vec::with_capacity(length);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if chunk.len() > length - buffer.len() {
            return Err(BodyError::WrongLength {
                announced: length,
                received: buffer.len() + chunk.len(),
            });
        }
        buffer.extend_from_slice(&chunk);
    }
    if buffer.len() != length {
        return Err(BodyError::WrongLength {
            announced: length,
            received: buffer.len(),
        });
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use bytes::Bytes;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_bytes: 1000,
            small_bytes: 100,
            large_slots: 1,
            slot_wait: Duration::from_millis(100),
            read_timeout: Duration::from_millis(200),
        }
    }

    fn with_length(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(value).expect("value"),
        );
        headers
    }

    /// A body that sends `first`, then nothing until `never` is dropped.
    fn stalled(first: &'static [u8]) -> (Body, tokio::sync::oneshot::Sender<()>) {
        let (never, wait) = tokio::sync::oneshot::channel::<()>();
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
            .chain(futures_util::stream::once(async move {
                let _ = wait.await;
                Ok(&b""[..])
            }));
        (Body::from_stream(stream), never)
    }

    #[test]
    fn the_announced_length() {
        let reader = BodyReader::new(limits());
        assert_eq!(
            reader.announced_length(&with_length("1000")).ok(),
            Some(1000)
        );
        assert_eq!(reader.announced_length(&with_length("0")).ok(), Some(0));
        assert!(matches!(
            reader.announced_length(&with_length("1001")),
            Err(BodyError::TooLarge {
                announced: 1001,
                max: 1000
            })
        ));
        assert!(matches!(
            reader.announced_length(&with_length("99999999999999999999999")),
            Err(BodyError::UnreadableLength)
        ));
        assert!(matches!(
            reader.announced_length(&with_length("-1")),
            Err(BodyError::UnreadableLength)
        ));
        assert!(matches!(
            reader.announced_length(&HeaderMap::new()),
            Err(BodyError::LengthRequired)
        ));
    }

    #[tokio::test]
    async fn a_body_is_its_announced_length() {
        let reader = BodyReader::new(limits());
        let body = reader.read(Body::from("hello"), 5).await.expect("read");
        assert_eq!(body, b"hello");
        assert_eq!(body.capacity(), 5, "one buffer of the announced length");
        assert!(matches!(
            reader.read(Body::from("hello"), 4).await,
            Err(BodyError::WrongLength {
                announced: 4,
                received: 5
            })
        ));
        assert!(matches!(
            reader.read(Body::from("hello"), 6).await,
            Err(BodyError::WrongLength {
                announced: 6,
                received: 5
            })
        ));
        let large = Bytes::from(vec![b'x'; 1000]);
        assert_eq!(
            reader
                .read(Body::from(large), 1000)
                .await
                .expect("read")
                .len(),
            1000
        );
    }

    #[tokio::test]
    async fn a_slow_body_is_cut_off() {
        let reader = BodyReader::new(limits());
        let (body, _never) = stalled(b"a start");
        let started = std::time::Instant::now();
        assert!(matches!(
            reader.read(body, 50).await,
            Err(BodyError::TimedOut(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn large_bodies_wait_for_a_slot_and_small_ones_do_not() {
        let reader = std::sync::Arc::new(BodyReader::new(BodyLimits {
            read_timeout: Duration::from_secs(1),
            ..limits()
        }));
        // A slow large body holds the one slot until its read times out.
        let (slow, _never) = stalled(b"x");
        let holder = {
            let reader = reader.clone();
            tokio::spawn(async move { reader.read(slow, 500).await })
        };
        while reader.large.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let large = Bytes::from(vec![b'y'; 500]);
        assert!(matches!(
            reader.read(Body::from(large.clone()), 500).await,
            Err(BodyError::Busy { .. })
        ));
        // A small one is read meanwhile.
        assert_eq!(
            reader.read(Body::from("small"), 5).await.expect("read"),
            b"small"
        );
        assert!(matches!(
            holder.await.expect("task"),
            Err(BodyError::TimedOut(_))
        ));
        // The slot is free again.
        assert_eq!(
            reader
                .read(Body::from(large), 500)
                .await
                .expect("read")
                .len(),
            500
        );
    }
}
