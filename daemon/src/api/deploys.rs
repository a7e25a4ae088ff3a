//! `GET /v1/deploys/{id}` (a deploy's record) and `GET /v1/deploys?limit=N`
//! (history, newest first). Open, or behind a signed `read` (config).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use deployd_protocol::api::DeployRecord;

use super::ApiError;
use crate::daemon::Daemon;

/// The most records one answer holds.
const MAX_LIMIT: usize = 1000;

/// `?limit=N`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How many records, newest first (default 20).
    limit: Option<usize>,
}

/// A deploy's record.
pub async fn get_deploy(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> Result<Json<DeployRecord>, ApiError> {
    daemon
        .deploy(&id)
        .map(|deploy| Json(deploy.record))
        .ok_or_else(|| ApiError::NotFound(quote_id(&id)))
}

/// History, newest first.
pub async fn list_deploys(
    State(daemon): State<Arc<Daemon>>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<DeployRecord>>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(20).min(MAX_LIMIT);
    Ok(Json(daemon.history(limit)))
}

/// An id from the URL, safe to echo.
pub fn quote_id(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_debug).collect()
}
