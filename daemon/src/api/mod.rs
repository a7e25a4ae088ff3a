//! The HTTP API (v1). [`router`] builds it, [`serve`] runs it until the
//! shutdown token is cancelled. One module per endpoint group; each says
//! who may call it.

mod deploy;
mod deploys;
mod error;
mod events;
mod limits;
mod plan;
mod read_auth;
mod status;

pub use error::{chain, ApiError};
pub use limits::{MAX_CONCURRENT_REQUESTS, REQUEST_TIMEOUT};

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use deployd_protocol::MAX_ENVELOPE_BYTES;
use deployd_service::http::Transport;
use deployd_service::throttle::{ThrottledLog, REFUSAL_LOG_INTERVAL};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::daemon::Daemon;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let reads = Router::new()
        .route("/v1/deploys", get(deploys::list_deploys))
        .route("/v1/deploys/{id}", get(deploys::get_deploy))
        .route("/v1/status", get(status::get_status))
        .route("/v1/plan", get(plan::get_plan))
        .route("/metrics", get(status::get_metrics));
    let streams = Router::new().route("/v1/deploys/{id}/events", get(events::deploy_events));
    let signed_reads = reads.merge(streams).layer(from_fn_with_state(
        daemon.clone(),
        read_auth::require_signed_read,
    ));
    let writes = Router::new()
        .route("/v1/deploy", post(deploy::post_deploy))
        .route("/v1/rollback", post(deploy::post_rollback))
        .route("/v1/deploys/{id}/confirm", post(deploy::post_confirm))
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE_BYTES))
        .layer(from_fn(limits::refuse_announced_oversize));
    let refusals = ThrottledLog::new("refused requests", REFUSAL_LOG_INTERVAL);
    // Layers wrap what is above them: the timeout covers the wait for a
    // slot, and every answer, the timeout's too, passes the refusal count.
    Router::new()
        .route("/healthz", get(status::healthz))
        .merge(signed_reads)
        .merge(writes)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .layer(from_fn(limits::answer_within_timeout))
        .layer(from_fn_with_state(
            (daemon.clone(), refusals),
            limits::count_refusals,
        ))
        .with_state(daemon)
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("route {method} {}", deploys::quote_id(uri.path())))
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// the requests in flight finish: over HTTPS only when the daemon has a
/// certificate (`[tls]`), else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let transport = match daemon.tls() {
        Some(certificate) => Transport::Tls(
            deployd_service::tls::acceptor(certificate).map_err(std::io::Error::other)?,
        ),
        None => Transport::Plain,
    };
    deployd_service::http::serve(listener, router(daemon), transport, shutdown).await
}
