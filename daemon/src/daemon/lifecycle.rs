//! The daemon's process-wide signals: shutdown, the restart a new deployd
//! asks for, the confirmations a waiting deploy is woken by, and the bound
//! on event streams. None of them needs the records lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Event streams served at once.
pub const MAX_EVENT_STREAMS: usize = 64;

/// Signals shared by the server, the deploys and the event streams.
#[derive(Debug)]
pub struct Lifecycle {
    /// Cancelled on SIGTERM: the server, event streams and background tasks stop.
    shutdown: CancellationToken,
    /// Bounds the event streams open at once (each holds a connection).
    streams: Arc<Semaphore>,
    /// Set when the system just activated runs another deployd: the daemon
    /// exits once the deploy is recorded, to be started anew.
    restart_after_deploy: AtomicBool,
    /// Woken when a confirm is taken, so the confirmation wait needs no polling.
    confirmations: Notify,
    /// Held while a plan runs (`GET /v1/plan`): one at a time, since each
    /// asks the caches about a whole closure.
    pub planning: tokio::sync::Mutex<()>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            shutdown: CancellationToken::new(),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            restart_after_deploy: AtomicBool::new(false),
            confirmations: Notify::new(),
            planning: tokio::sync::Mutex::new(()),
        }
    }
}

impl Lifecycle {
    /// The token that stops everything on shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A permit to serve one event stream, if fewer than the maximum are open.
    pub fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// Asks for a restart once the running deploy is recorded.
    pub fn request_restart(&self) {
        self.restart_after_deploy.store(true, Ordering::SeqCst);
    }

    /// Whether a restart was asked for.
    pub fn restart_requested(&self) -> bool {
        self.restart_after_deploy.load(Ordering::SeqCst)
    }

    /// Resolves when a confirm is taken after this call (see
    /// [`Notify::notified`]: enable it, then check, then wait).
    pub fn confirmation_taken(&self) -> tokio::sync::futures::Notified<'_> {
        self.confirmations.notified()
    }

    /// Wakes every deploy waiting for its confirmation.
    pub fn confirmation_arrived(&self) {
        self.confirmations.notify_waiters();
    }
}
