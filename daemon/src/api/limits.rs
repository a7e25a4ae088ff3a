//! What bounds a request, in the order the router applies it (outermost
//! first): every error answer counted by code (`deployd_refused_total` in
//! `/metrics`) and logged at most once a minute with the counts, as any
//! peer can cause them at will; [`REQUEST_TIMEOUT`] around the wait for one
//! of the [`MAX_CONCURRENT_REQUESTS`] slots and the handling, so a request
//! waits for a slot no longer than it could be handled; and on the signed
//! endpoints, a body announced larger than an envelope may be refused
//! before a byte of it is read. Connections themselves are bounded by the
//! accept loop (`deployd_service::http`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deployd_protocol::{ErrorCode, MAX_ENVELOPE_BYTES};
use deployd_service::throttle::ThrottledLog;

use super::error::Refusal;
use super::ApiError;
use crate::daemon::Daemon;

/// How long a request (other than an event stream's events) may take, the
/// wait for a slot included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests are handled at once; more wait (within the timeout).
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// Counts every error answer by code and logs it, at most once a minute
/// (with how many were not logged); a 500 was logged with its cause
/// already.
pub async fn count_refusals(
    State((daemon, log)): State<(Arc<Daemon>, Arc<ThrottledLog>)>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(Refusal { code, message }) = response.extensions().get::<Refusal>() {
        daemon.count_refusal(*code);
        if *code != ErrorCode::Internal && log.admit(code.as_str()) {
            log::info!(
                "refused a request: {code}: {message} (all are counted in /metrics; logged at most once a minute)"
            );
        }
    }
    response
}

/// Ends a request that takes too long, the wait for a slot included, with
/// a JSON error like every other.
pub async fn answer_within_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::BadRequest(format!("the request took longer than {REQUEST_TIMEOUT:?}"))
            .into_response(),
    }
}

/// Refuses a body announced (`Content-Length`) larger than an envelope may
/// be at once: waiting for bytes that would be refused anyway would hold a
/// request slot for nothing.
pub async fn refuse_announced_oversize(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_ENVELOPE_BYTES as u64) {
        return ApiError::PayloadTooLarge(MAX_ENVELOPE_BYTES).into_response();
    }
    next.run(request).await
}
