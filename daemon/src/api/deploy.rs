//! `POST /v1/deploy` (a signed `deploy` envelope), `POST /v1/rollback` (a
//! signed `rollback`) and `POST /v1/deploys/{id}/confirm` (a signed
//! `confirm`): anyone may call them, only a trusted key's signature
//! makes them do anything. 202 with the deploy's id and status URL; the very
//! same envelope again answers the same deploy.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use deployd_protocol::api::DeployAccepted;
use deployd_protocol::{DeployId, MAX_ENVELOPE_BYTES};

use super::ApiError;
use crate::daemon::{Admission, AdmissionError, Daemon};
use crate::pipeline;

/// Accepts a deploy and starts it.
pub async fn post_deploy(
    State(daemon): State<Arc<Daemon>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeployAccepted>), ApiError> {
    let body = read_body(body)?;
    let accepted = accept_and_start(daemon, move |daemon| daemon.accept_deploy(&body)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Runs `accept` off the threads that serve requests (verification and the
/// synced writes of acceptance block), and starts a new deploy's pipeline in
/// the same task: a client that goes away meanwhile drops only the answer,
/// never leaving a deploy accepted but not started.
async fn accept_and_start(
    daemon: Arc<Daemon>,
    accept: impl FnOnce(&Daemon) -> Result<Admission, AdmissionError> + Send + 'static,
) -> Result<DeployAccepted, ApiError> {
    tokio::task::spawn_blocking(move || {
        let admission = accept(&daemon)?;
        let accepted = admission.accepted().clone();
        if let Admission::New(_) = admission {
            pipeline::spawn(daemon, accepted.deploy_id.clone());
        }
        Ok(accepted)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Accepts a rollback (a deploy back to the previous generation) and starts it.
pub async fn post_rollback(
    State(daemon): State<Arc<Daemon>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeployAccepted>), ApiError> {
    let body = read_body(body)?;
    let accepted = accept_and_start(daemon, move |daemon| daemon.accept_rollback(&body)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Confirms a deploy that waits for it (magic rollback).
pub async fn post_confirm(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DeployAccepted>, ApiError> {
    let body = read_body(body)?;
    let id: DeployId = id
        .parse()
        .map_err(|_| ApiError::NotFound(super::deploys::quote_id(&id)))?;
    let confirming = daemon.clone();
    let accepted = tokio::task::spawn_blocking(move || confirming.confirm(&body, &id))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(accepted))
}

/// The body, or the right error for one too large or cut short.
pub fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_ENVELOPE_BYTES)
        } else {
            ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}
