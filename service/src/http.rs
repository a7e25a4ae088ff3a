//! The accept loop of deployd's HTTP services: every connection bounded (at
//! most [`MAX_CONNECTIONS`] at once, HTTP/1 only, each request's headers
//! within [`HEADER_TIMEOUT`] from the first byte on, so a peer that connects
//! and sends nothing holds its slot that long and no longer), and a graceful
//! shutdown that lets requests in flight finish once the shutdown token is
//! cancelled (event streams end on that same token).
//!
//! Served over HTTPS ([`Transport::Tls`]), a connection's TLS handshake
//! counts against that same bound: the handshake and the first request's
//! headers together must come within [`HEADER_TIMEOUT`] of the connection,
//! so a peer that connects and never finishes its handshake holds its slot
//! no longer than a silent plain-HTTP peer. A failed handshake (a plain-HTTP
//! request, a client that does not trust the certificate) closes the
//! connection; it is logged at debug level only, as scanners make many.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    // HTTP/1 alone: no protocol sniffing before the header timer starts, and
    // no cleartext HTTP/2 multiplexing many requests on one permit.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
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
        let accepted_at = Instant::now();
        let service = TowerToHyperService::new(router.clone());
        // Subscribed now, so a shutdown from here on reaches the connection.
        let watcher = graceful.watcher();
        match &transport {
            Transport::Plain => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = watcher.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(permit);
                });
            }
            Transport::Tls(acceptor) => {
                let (acceptor, mut builder) = (acceptor.clone(), builder.clone());
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let Some(stream) = handshake(&acceptor, (stream, peer), &shutdown).await else {
                        return;
                    };
                    // What is left of the bound is the time for the headers
                    // (the connection's later requests get no more: a
                    // handshake takes milliseconds, unless the peer stalls).
                    let left = HEADER_TIMEOUT.saturating_sub(accepted_at.elapsed());
                    builder.header_read_timeout(left.max(Duration::from_millis(1)));
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}

/// The TLS handshake on `stream`, within [`HEADER_TIMEOUT`]; `None` when it
/// fails, takes longer, or the server shuts down meanwhile.
async fn handshake(
    acceptor: &TlsAcceptor,
    (stream, peer): (TcpStream, SocketAddr),
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        done = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                log::debug!("TLS handshake with {peer} failed: {error}");
                None
            }
            Err(_) => {
                log::debug!("TLS handshake with {peer} took longer than {HEADER_TIMEOUT:?}");
                None
            }
        },
    }
}
