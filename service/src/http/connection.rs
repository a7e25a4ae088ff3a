//! One connection of the accept loop, from its TLS handshake (over HTTPS)
//! to its close: its requests mark it serving until each response's body
//! is sent, a kept-alive connection that waits longer than [`IDLE_TIMEOUT`]
//! for its next request is closed, and so is one the loop asks to close
//! (shutdown, or the longest-waiting connection of a nearly full service):
//! after the request it serves, if any, at once otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1::{Builder, Connection};
use hyper::service::HttpService;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::clients::{Activity, Registration, Serving};
use super::{Transport, HEADER_TIMEOUT, IDLE_TIMEOUT};

/// A connection the loop took.
pub struct Accepted {
    /// Its socket.
    pub stream: TcpStream,
    /// Its peer (for the log).
    pub peer: SocketAddr,
    /// When it was accepted: the handshake and the first headers are due
    /// within [`HEADER_TIMEOUT`] of it.
    pub accepted_at: Instant,
    /// Its place among its client's connections, kept until it closes.
    pub registration: Registration,
    /// Cancelled to close it (the loop's shutdown token's child).
    pub close: CancellationToken,
    /// Its slot among all connections, kept until it closes.
    pub slot: OwnedSemaphorePermit,
}

/// Serves `connection` with `router` until it closes.
pub async fn serve(connection: Accepted, router: Router, transport: Transport, builder: Builder) {
    let Accepted {
        stream,
        peer,
        accepted_at,
        registration,
        close,
        slot,
    } = connection;
    let activity = registration.activity();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let serving = Serving::begin(&activity);
        // Who asks, for handlers that bound what one client may hold (push
        // serve's long polls).
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await?;
            // The body holds the mark: dropped once sent, or given up.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _serving = &serving;
                    frame
                }))
            }))
        }
    });
    match transport {
        Transport::Plain => {
            let io = TokioIo::new(stream);
            let connection = builder.serve_connection(io, service);
            drive(connection, registration.watch(), &close).await;
        }
        Transport::Tls(acceptor) => {
            let Some(stream) = handshake(&acceptor, (stream, peer), &close).await else {
                return;
            };
            // What is left of the bound is the time for the headers (the
            // connection's later requests get no more: a handshake takes
            // milliseconds, unless the peer stalls).
            let left = HEADER_TIMEOUT.saturating_sub(accepted_at.elapsed());
            let mut builder = builder;
            builder.header_read_timeout(left.max(Duration::from_millis(1)));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            drive(connection, registration.watch(), &close).await;
        }
    }
    // Counted until here, against its client and among all connections.
    drop((registration, slot));
}

/// Runs the HTTP connection until it ends, closing it gracefully once it
/// has waited [`IDLE_TIMEOUT`] for a next request or `close` is cancelled.
async fn drive<I, S, B>(
    connection: Connection<I, S>,
    mut activity: watch::Receiver<Activity>,
    close: &CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    loop {
        let idle_until = match *activity.borrow_and_update() {
            Activity::Waiting {
                since,
                served: true,
            } => Some(since + IDLE_TIMEOUT),
            _ => None,
        };
        let idle = async move {
            match idle_until {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = activity.changed() => if changed.is_err() { break },
            _ = idle => break,
            _ = close.cancelled() => break,
        }
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The TLS handshake, within [`HEADER_TIMEOUT`]; `None` when it fails,
/// takes longer, or the connection is asked to close meanwhile.
async fn handshake(
    acceptor: &TlsAcceptor,
    (stream, peer): (TcpStream, SocketAddr),
    close: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::select! {
        _ = close.cancelled() => None,
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
