//! The HTTP API (v1). [`router`] builds it, [`serve`] runs it until the
//! shutdown token is cancelled. One module per endpoint group; each says
//! who may call it.

mod deploy;
mod deploys;
mod error;
mod events;
mod read_auth;
mod status;

pub use error::{chain, ApiError};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use deployd_protocol::MAX_ENVELOPE_BYTES;
use deployd_service::http::Transport;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::daemon::Daemon;

/// How long a request (other than an event stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests are handled at once; more wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let timed = axum::middleware::from_fn(answer_within_timeout);
    let reads = Router::new()
        .route("/v1/deploys", get(deploys::list_deploys))
        .route("/v1/deploys/{id}", get(deploys::get_deploy))
        .route("/v1/status", get(status::get_status))
        .route("/metrics", get(status::get_metrics))
        .layer(timed.clone());
    let streams = Router::new().route("/v1/deploys/{id}/events", get(events::deploy_events));
    let signed_reads = reads
        .merge(streams)
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            read_auth::require_signed_read,
        ));
    let writes = Router::new()
        .route("/v1/deploy", post(deploy::post_deploy))
        .route("/v1/rollback", post(deploy::post_rollback))
        .route("/v1/deploys/{id}/confirm", post(deploy::post_confirm))
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE_BYTES))
        .layer(timed);
    Router::new()
        .route("/healthz", get(status::healthz))
        .merge(signed_reads)
        .merge(writes)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .with_state(daemon)
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("route {method} {}", deploys::quote_id(uri.path())))
}

/// Ends a request that takes too long with a JSON error, like every other.
async fn answer_within_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::BadRequest(format!("the request took longer than {REQUEST_TIMEOUT:?}"))
            .into_response(),
    }
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
