//! The signed-read option: when `read_requires_signature` is set, every read
//! endpoint but `/healthz` needs `Authorization: DSSE <base64 of an envelope
//! of kind read>` naming the request's method and path (with its query).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_protocol::MAX_ENVELOPE_BYTES;

use super::ApiError;
use crate::daemon::Daemon;

/// Lets a read through only with a valid signed `read` for it.
pub async fn require_signed_read(
    State(daemon): State<Arc<Daemon>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if daemon.config().file.read_requires_signature {
        let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
            ApiError::BadRequest(
                "this host requires signed reads: Authorization: DSSE <envelope>".into(),
            )
        })?;
        let encoded = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("DSSE "))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "the Authorization header must be `DSSE <base64 envelope>`".into(),
                )
            })?;
        if encoded.len() > MAX_ENVELOPE_BYTES * 4 / 3 + 4 {
            return Err(ApiError::PayloadTooLarge(MAX_ENVELOPE_BYTES));
        }
        let envelope = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::BadRequest("the Authorization envelope is not base64".into()))?;
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        daemon.verify_read(&envelope, request.method().as_str(), path)?;
    }
    Ok(next.run(request).await)
}
