//! The HTTP API (v1). [`router`] builds it, [`serve`] runs it until the
//! shutdown token is cancelled. One module per endpoint group; each says
//! who may call it.

mod deploy;
mod deploys;
mod error;
mod events;
mod read_auth;
mod status;

pub use error::ApiError;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use deployd_protocol::MAX_ENVELOPE_BYTES;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::daemon::Daemon;

/// How long a request (other than an event stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests are handled at once; more wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let reads = Router::new()
        .route("/v1/deploys", get(deploys::list_deploys))
        .route("/v1/deploys/{id}", get(deploys::get_deploy))
        .route("/v1/status", get(status::get_status))
        .route("/metrics", get(status::get_metrics))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    let streams = Router::new().route("/v1/deploys/{id}/events", get(events::deploy_events));
    let signed_reads = reads
        .merge(streams)
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            read_auth::require_signed_read,
        ));
    let writes = Router::new()
        .route("/v1/deploy", post(deploy::post_deploy))
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    Router::new()
        .route("/healthz", get(status::healthz))
        .merge(signed_reads)
        .merge(writes)
        .fallback(not_found)
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .with_state(daemon)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("route {}", deploys::quote_id(uri.path())))
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(daemon))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
