//! The accept loop of deployd's HTTP services. It bounds what any peer can
//! hold: at most [`MAX_CONNECTIONS`] connections at once, and at most
//! [`MAX_CONNECTIONS_PER_CLIENT`] of them from one client (one IPv4
//! address, or one IPv6 /64), beyond which a client's new connection is
//! closed at once; HTTP/1 only; each request's headers within
//! [`HEADER_TIMEOUT`] (a peer that connects and sends nothing holds its
//! slot that long and no longer); a kept-alive connection closed once it
//! has waited [`IDLE_TIMEOUT`] for its next request; and, once more than
//! [`CROWDED_ABOVE`] connections are open, each new connection closes the
//! one that has waited longest for a request, so a new client is served
//! even while many clients each hold a few connections with a request
//! every few seconds. A graceful shutdown lets requests in flight finish
//! once the shutdown token is cancelled (event streams end on that same
//! token).
//!
//! Served over HTTPS ([`Transport::Tls`]), a connection's TLS handshake
//! counts against that same bound: the handshake and the first request's
//! headers together must come within [`HEADER_TIMEOUT`] of the connection,
//! so a peer that connects and never finishes its handshake holds its slot
//! no longer than a silent plain-HTTP peer. A failed handshake (a plain-HTTP
//! request, a client that does not trust the certificate) closes the
//! connection; it is logged at debug level only, as scanners make many.
//!
//! Refused and closed connections are logged at most once a minute, with
//! their counts ([`crate::throttle`]).

mod clients;
mod connection;
mod gate;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use connection::Accepted;
use gate::Gate;

/// Connections served at once. When all are open, the one that has waited
/// longest for a request is closed for a newcomer, who otherwise waits in
/// the kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections one client (an IPv4 address, an IPv6 /64) may hold at once.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Above this many open connections, each new one closes the connection
/// that has waited longest for a request (7/8 of [`MAX_CONNECTIONS`]).
pub const CROWDED_ABOVE: usize = MAX_CONNECTIONS - MAX_CONNECTIONS / 8;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a full service looks again for a connection to close.
const FULL_RECHECK: Duration = Duration::from_millis(100);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the loop takes: the constants above (the tests
/// use smaller numbers, to stay within a small open-files limit).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Connections at once.
    connections: usize,
    /// Connections of one client at once.
    per_client: usize,
    /// Above this many, a new connection closes the longest-waiting one.
    crowded_above: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        connections: MAX_CONNECTIONS,
        per_client: MAX_CONNECTIONS_PER_CLIENT,
        crowded_above: CROWDED_ABOVE,
    };
}

/// How connections are served.
#[derive(Clone, Default)]
pub enum Transport {
    /// Plain HTTP.
    #[default]
    Plain,
    /// HTTPS only: every connection starts with a TLS handshake.
    Tls(TlsAcceptor),
}

/// Serves `router` over plain HTTP on `listener` until `shutdown` is
/// cancelled.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, router, Transport::Plain, shutdown).await
}

/// Serves `router` on `listener`, over `transport`, until `shutdown` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_within(listener, router, (transport, Limits::DEFAULT), shutdown).await
}

/// [`serve`] with other limits (the tests').
async fn serve_within(
    listener: TcpListener,
    router: Router,
    (transport, limits): (Transport, Limits),
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // HTTP/1 alone: no protocol sniffing before the header timer starts, and
    // no cleartext HTTP/2 multiplexing many requests on one permit.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let gate = Gate::new(limits);
    // Every connection task, waited for at shutdown.
    let tasks = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = gate.free_slot() => match slot {
                Some(slot) => slot,
                None => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    log::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some((registration, close)) = gate.register(peer, &shutdown) else {
            continue;
        };
        let accepted = Accepted {
            stream,
            peer,
            accepted_at: Instant::now(),
            registration,
            close,
            slot,
        };
        tasks.spawn(connection::serve(
            accepted,
            router.clone(),
            transport.clone(),
            builder.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        log::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}
