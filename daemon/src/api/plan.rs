//! `GET /v1/plan?store_path=/nix/store/...`: what deploying that system
//! would change here, changing nothing (`push plan`; see [`crate::plan`]).
//! A read: open, or behind a signed `read` naming this exact path and
//! query (config), like the other reads. One plan at a time (a second is
//! `busy`): each asks the caches about a whole closure.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use deployd_protocol::plan::PlanResponse;
use deployd_protocol::StorePath;

use super::ApiError;
use crate::daemon::Daemon;

/// `?store_path=...`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// The system to plan for (it checks itself).
    store_path: StorePath,
}

/// The plan of the system asked about.
pub async fn get_plan(
    State(daemon): State<Arc<Daemon>>,
    query: Result<Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PlanResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let _planning = daemon
        .lifecycle
        .planning
        .try_lock()
        .map_err(|_| ApiError::Planning)?;
    let config = daemon.config();
    crate::plan::plan(&config, &query.store_path)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}
