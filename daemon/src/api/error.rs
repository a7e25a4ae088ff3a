//! `ApiError`: every error the API answers, mapped exhaustively to the codes
//! and statuses the book's error codes fix (docs/src/reference/error-codes.md). A 500 logs its cause and tells the client
//! nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use deployd_protocol::{DeployId, ErrorBody, ErrorCode, RejectError};

use crate::daemon::AdmissionError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A signed message failed verification.
    #[error(transparent)]
    Rejected(#[from] RejectError),
    /// A message's nonce was used before (and it is not a retry of the same envelope).
    #[error("this message's nonce was already used")]
    Replayed,
    /// A desired state issued before the last one the host applied.
    #[error("this desired state was issued before the last desired state this host applied")]
    IssuedBeforeLastApplied,
    /// A new message reuses the id of an earlier deploy.
    #[error("deploy id {0} was already used")]
    DeployIdReused(DeployId),
    /// A deploy is running.
    #[error("deploy {0} is running; one deploy at a time")]
    Busy(DeployId),
    /// The store path is quarantined (its message names the deploy).
    #[error(transparent)]
    Quarantined(crate::daemon::Quarantined),
    /// A plan is running (one at a time).
    #[error("another plan is being made on this host; try again in a moment")]
    Planning,
    /// Too many event streams are open.
    #[error("too many event streams are open; try again later")]
    TooManyStreams,
    /// No such deploy.
    #[error("no deploy {0}")]
    NotFound(String),
    /// The body is larger than any valid request.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A malformed request outside any signed message.
    #[error("{0}")]
    BadRequest(String),
    /// Something failed on the host.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// An internal error with `cause`, which goes to the log only.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Rejected(error) => error.code(),
            ApiError::Replayed
            | ApiError::IssuedBeforeLastApplied
            | ApiError::DeployIdReused(_) => ErrorCode::Replayed,
            ApiError::Busy(_) | ApiError::Planning | ApiError::TooManyStreams => ErrorCode::Busy,
            ApiError::Quarantined(_) => ErrorCode::Quarantined,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sentence for the client.
    pub fn message(&self) -> String {
        match self {
            ApiError::Rejected(error) => error.message(),
            ApiError::Internal(_) => {
                "the host failed to handle the request; its log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<AdmissionError> for ApiError {
    /// Every refusal the domain knows, each decided here: a new variant
    /// does not compile until it has its answer.
    fn from(error: AdmissionError) -> Self {
        match error {
            AdmissionError::Rejected(error) => ApiError::Rejected(error),
            AdmissionError::Replayed => ApiError::Replayed,
            AdmissionError::IssuedBeforeLastApplied => ApiError::IssuedBeforeLastApplied,
            AdmissionError::DeployIdReused(id) => ApiError::DeployIdReused(id),
            AdmissionError::Busy(id) => ApiError::Busy(id),
            AdmissionError::Quarantined(quarantined) => ApiError::Quarantined(quarantined),
            AdmissionError::NotFound(id) => ApiError::NotFound(id.to_string()),
            error @ (AdmissionError::NoPreviousGeneration
            | AdmissionError::NotAwaitingConfirm { .. }
            | AdmissionError::WindowClosed(_)) => ApiError::BadRequest(error.to_string()),
            error @ (AdmissionError::State(_) | AdmissionError::Inconsistent(_)) => {
                ApiError::internal(error)
            }
        }
    }
}

/// What an error answer said, kept on the response for the layer that
/// counts refusals and logs them (at most once a minute: a peer can cause
/// them at will).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The code answered.
    pub code: ErrorCode,
    /// The sentence answered.
    pub message: String,
}

impl IntoResponse for ApiError {
    /// The JSON answer; a 500 logs its cause here, every other refusal is
    /// logged by the layer that counts them.
    fn into_response(self) -> Response {
        let code = self.code();
        if code == ErrorCode::Internal {
            let cause: &dyn std::error::Error = match &self {
                ApiError::Internal(cause) => cause.as_ref(),
                ApiError::Rejected(error) => error,
                other => other,
            };
            log::error!("internal error answering a request: {}", chain(cause));
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = self.message();
        let body = ErrorBody {
            error: code,
            message: message.clone(),
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(Refusal { code, message });
        response
    }
}

/// An error and its causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
