//! Who gets a connection: a free slot among all connections (when there is
//! none, the connection that has waited longest for a request is closed to
//! make one), a client below its own limit (beyond it, the new connection
//! is closed at once), and, once the service is nearly full, the
//! longest-waiting connection closed for each new one. Refused and closed
//! connections are logged at most once a minute, with counts.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::clients::{Client, Connections, Registration};
use super::{Limits, FULL_RECHECK};
use crate::throttle::{ThrottledLog, REFUSAL_LOG_INTERVAL};

/// The accept loop's admission of connections.
pub struct Gate {
    /// The numbers.
    limits: Limits,
    /// The slots of all connections; each connection task holds one.
    slots: Arc<Semaphore>,
    /// The open connections by client, and what each is doing.
    connections: Arc<Connections>,
    /// Refused and closed connections, logged at most once a minute.
    refusals: Arc<ThrottledLog>,
}

impl Gate {
    /// No connection yet.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            slots: Arc::new(Semaphore::new(limits.connections)),
            connections: Connections::new(limits.per_client),
            refusals: ThrottledLog::new("connections refused or closed", REFUSAL_LOG_INTERVAL),
        }
    }

    /// A free slot: at once when there is one, else once a connection
    /// closes, after asking the one that has waited longest for a request
    /// to close (again every [`FULL_RECHECK`], as connections that served
    /// a request go back to waiting); `None` when the slots are gone.
    pub async fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return Some(slot);
            }
            if self.connections.close_longest_waiting(None)
                && self.refusals.admit("closed while waiting (full)")
            {
                log::info!(
                    "all {} connections open: closing the one that has waited longest for a \
                     request (logged at most once a minute)",
                    self.limits.connections
                );
            }
            tokio::select! {
                slot = self.slots.clone().acquire_owned() => return slot.ok(),
                _ = tokio::time::sleep(FULL_RECHECK) => {}
            }
        }
    }

    /// Takes the connection from `peer` (its slot taken already) unless its
    /// client holds its limit; once more than the crowded number are open,
    /// closes the connection that has waited longest for a request to keep
    /// room. The connection closes when the returned token (a child of
    /// `shutdown`) is cancelled.
    pub fn register(
        &self,
        peer: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Option<(Registration, CancellationToken)> {
        let close = shutdown.child_token();
        let registration = match self
            .connections
            .register(Client::of(peer.ip()), close.clone())
        {
            Ok(registration) => registration,
            Err(at_limit) => {
                if self.refusals.admit("refused (its client at the limit)") {
                    log::info!(
                        "refused a connection from {peer}: {} holds {} connections, the most \
                         one client may (logged at most once a minute)",
                        at_limit.client,
                        at_limit.holds
                    );
                }
                return None;
            }
        };
        let open = self.limits.connections - self.slots.available_permits();
        if open > self.limits.crowded_above
            && self.connections.close_longest_waiting(Some(&registration))
            && self.refusals.admit("closed while waiting (nearly full)")
        {
            log::info!(
                "{open} connections open: closing the one that has waited longest for a \
                 request, to serve {peer} (logged at most once a minute)"
            );
        }
        Some((registration, close))
    }
}
