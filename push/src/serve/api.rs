//! The service's HTTP API:
//! - `POST /v1/hooks/{forge}` (the forge; only a hook signed with the
//!   webhook secret does anything): `202` for a push it queues, `204` for
//!   anything it ignores, `401` unsigned or wrongly signed, `413` over
//!   5 MiB, `404` for another forge than the configured one; errors are the
//!   daemon's JSON (`{"error", "message"}`). Answered at once: the work is
//!   the worker's. The body is read only after the cheap checks (the
//!   route, the signature header, the announced length), within the
//!   limits of `hook_body.rs` (`411`, `408`, `503` with `Retry-After`).
//! - `GET /v1/status` (anyone): the branches followed, the rollout running,
//!   the pushes queued and the recent rollouts with every host's result.
//! - `/v1/channel/...`: the channel of the hosts that pull (see
//!   `channel/routes.rs`).
//! - `GET /`, `/rollouts/ID`, `/hosts/H` (anyone): the pages for people
//!   (see `pages`).
//! - `GET /metrics` (anyone): hooks and rollouts by outcome, queue length,
//!   last rollout time. `GET /healthz`: `ok`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use deployd_protocol::{ErrorBody, ErrorCode};

use super::channel;
use super::channel::routes::mark_as_push_serve;
use super::config::{Follow, ForgeKind};
use super::hook_body::BodyError;
use super::hooks::{self, Hook, HookError};
use super::queue::{QueueState, QueuedPush, RolloutRecord};
use super::statuses::short;
use super::{now_ms, Service};

/// How long a request may take, its body included (headers must come
/// within the accept loop's own limit).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes.
pub fn router(service: Arc<Service>) -> Router {
    let hooks_and_status = Router::new()
        .route("/v1/hooks/{forge}", post(post_hook))
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(super::pages::routes())
        .layer(axum::middleware::from_fn(answer_within_timeout));
    // Outside the request timeout: a long poll lasts up to a minute, and a
    // body's read has its own limit.
    let channel = Router::new()
        .route(
            "/v1/channel/hosts/{file}",
            get(channel::routes::get_state).put(channel::routes::put_state),
        )
        .route(
            "/v1/channel/reports/{host}",
            get(channel::routes::get_report).post(channel::routes::post_report),
        )
        .route("/v1/channel", any(channel::routes::no_such_thing))
        .route("/v1/channel/{*rest}", any(channel::routes::no_such_thing))
        .layer(map_response(mark_as_push_serve));
    Router::new()
        .merge(hooks_and_status)
        .merge(channel)
        .with_state(service)
}

/// Ends a request that takes longer than [`REQUEST_TIMEOUT`] (a body sent
/// a byte at a time holds nothing for long).
async fn answer_within_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            ErrorCode::BadRequest,
            format!("the request took longer than {REQUEST_TIMEOUT:?}"),
        ),
    }
}

/// An error answer, as the daemon's.
pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_with_status(status, code, message)
}

/// An error answer with a status more precise than its code's (`411`,
/// `408`, `503`: the body's refusals, which the daemon's codes do not name).
pub(super) fn error_with_status(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error: code,
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Checks a forge's hook and queues the push it announces.
async fn post_hook(
    State(service): State<Arc<Service>>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let kind = service.config.forge.kind;
    if forge != kind.as_str() {
        service.counters().hook("not_found");
        return error(
            ErrorCode::NotFound,
            format!("this service takes {} hooks", kind.as_str()),
        );
    }
    // The cheap checks, before a byte of the body is read.
    if let Err(refusal) = hooks::check_before_body(kind, &headers, &service.webhook_secret) {
        return refuse_signature(&service, kind, refusal);
    }
    let body = match service.bodies.announced_length(&headers) {
        Ok(length) => service.bodies.read(body, length).await,
        Err(refusal) => Err(refusal),
    };
    let body = match body {
        Ok(body) => body,
        Err(refusal) => return refuse_body(&service, kind, refusal),
    };
    // The signature, over the bytes as received; nothing is parsed before.
    if let Err(refusal) = hooks::verify(kind, &headers, &body, &service.webhook_secret) {
        return refuse_signature(&service, kind, refusal);
    }
    let hook = hooks::classify(kind, &headers, &body, |branch| {
        service.config.following(branch).is_some()
    });
    match hook {
        Err(refusal) => {
            service.counters().hook("bad_request");
            error(ErrorCode::BadRequest, refusal.to_string())
        }
        Ok(Hook::Ignored(why)) => {
            service.counters().hook("ignored");
            log::info!("ignored a {} hook: {why}", kind.as_str());
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Hook::Push {
            branch,
            after,
            delivery,
        }) => queue_push(service, kind, branch, after, delivery).await,
    }
}

/// `401` for a hook without the right signature (GitLab: token); counted,
/// and logged at most once a minute (a peer cannot flood the journal).
fn refuse_signature(service: &Service, kind: ForgeKind, refusal: HookError) -> Response {
    if service.refused("unauthorized") {
        log::warn!(
            "refused a {} hook: {refusal} (counted in /metrics; logged at most once a minute)",
            kind.as_str()
        );
    }
    error(ErrorCode::BadSignature, refusal.to_string())
}

/// The answer to a body refused before or while it was read; counted, and
/// the ones that say the service is under load (or a sender too slow)
/// logged at most once a minute.
fn refuse_body(service: &Service, kind: ForgeKind, refusal: BodyError) -> Response {
    let (status, code, outcome) = match &refusal {
        BodyError::LengthRequired => (
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::BadRequest,
            "bad_request",
        ),
        BodyError::UnreadableLength | BodyError::Read(_) | BodyError::WrongLength { .. } => (
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "bad_request",
        ),
        BodyError::TooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "too_large",
        ),
        BodyError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, "busy"),
        BodyError::TimedOut(_) => (
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadRequest,
            "timed_out",
        ),
    };
    let first_in_a_while = service.refused(outcome);
    match &refusal {
        BodyError::Busy { .. } | BodyError::TimedOut(_) if first_in_a_while => log::warn!(
            "refused a {} hook: {refusal} (counted in /metrics; logged at most once a minute)",
            kind.as_str()
        ),
        BodyError::Read(cause) => log::debug!("a {} hook: {refusal}: {cause}", kind.as_str()),
        _ => {}
    }
    let mut response = error_with_status(status, code, refusal.to_string());
    if let BodyError::Busy { retry_after } = refusal {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs()),
        );
    }
    response
}

async fn queue_push(
    service: Arc<Service>,
    kind: ForgeKind,
    branch: String,
    after: String,
    delivery: String,
) -> Response {
    let push = QueuedPush {
        branch: branch.clone(),
        after: after.clone(),
        delivery: delivery.clone(),
        received_at_ms: now_ms(),
        superseded: Vec::new(),
    };
    let queued = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            let mut queue = service.queue();
            if queue.already_deployed(&push) {
                return Ok(false);
            }
            queue.enqueue(push).map(|()| true)
        })
        .await
    };
    match queued {
        Ok(Ok(false)) => {
            service.counters().hook("ignored");
            log::info!(
                "ignored a {} push of {branch}: {} is deployed",
                kind.as_str(),
                short(&after)
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(true)) => {
            service.counters().hook("accepted");
            service.wake.notify_one();
            log::info!(branch = branch.as_str(), rev = after.as_str(); "queued a {} push of {branch} (delivery {delivery})", kind.as_str());
            let body =
                serde_json::json!({ "queued": branch, "after": after, "delivery": delivery });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Err(cause)) => {
            log::error!("cannot queue a push of {branch}: {cause:#}");
            service.counters().hook("error");
            error(
                ErrorCode::Internal,
                "the push could not be queued; the service's log has the details",
            )
        }
        Err(cause) => {
            log::error!("cannot queue a push of {branch}: {cause}");
            service.counters().hook("error");
            error(
                ErrorCode::Internal,
                "the push could not be queued; the service's log has the details",
            )
        }
    }
}

/// `GET /v1/status`.
#[derive(Debug, serde::Serialize)]
struct StatusAnswer {
    forge: &'static str,
    following: Vec<Following>,
    running: Option<Running>,
    queued: Vec<QueuedPush>,
    recent: Vec<RolloutRecord>,
    /// The hosts that pull: what the channel holds for them, their last report.
    pulling: Vec<PullingHost>,
}

#[derive(Debug, serde::Serialize)]
struct PullingHost {
    host: String,
    /// The desired state held.
    held: Option<channel::HeldSummary>,
    /// The newest report.
    report: Option<PullReport>,
}

#[derive(Debug, serde::Serialize)]
struct PullReport {
    deploy_id: String,
    state: String,
    sequence: Option<u64>,
    sent_at: u64,
    error: Option<String>,
}

/// The hosts that pull, or that the channel holds something for.
fn pulling_hosts(service: &Service) -> Vec<PullingHost> {
    let channel = &service.channel;
    channel
        .hosts()
        .into_iter()
        .map(|host| PullingHost {
            held: channel.held(&host).map(|held| held.summary),
            report: channel.report(&host).map(|kept| {
                let report = &kept.report;
                PullReport {
                    deploy_id: report.record.deploy_id.to_string(),
                    state: report.record.state.to_string(),
                    sequence: report.sequence,
                    sent_at: report.sent_at,
                    error: report
                        .record
                        .error
                        .as_ref()
                        .map(|error| format!("{}: {}", error.code, error.message)),
                }
            }),
            host: host.to_string(),
        })
        .collect()
}

#[derive(Debug, serde::Serialize)]
struct Following {
    #[serde(flatten)]
    follow: Follow,
    deployed: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct Running {
    /// Its number (its page is `/rollouts/ID`).
    id: Option<u64>,
    branch: String,
    rev: Option<String>,
    hosts: Vec<String>,
    started_at_ms: u64,
}

/// The queue's state, read off the runtime (its lock is held across fsync).
pub(super) async fn queue_state(service: &Arc<Service>) -> QueueState {
    let service = service.clone();
    tokio::task::spawn_blocking(move || service.queue().state().clone())
        .await
        .unwrap_or_default()
}

/// The service's status: branches followed, the rollout running, the queue, recent rollouts.
async fn get_status(State(service): State<Arc<Service>>) -> Json<serde_json::Value> {
    let state = queue_state(&service).await;
    let rev_and_hosts = service
        .running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let running = state.running.as_ref().map(|push| Running {
        id: state.running_id,
        branch: push.branch.clone(),
        rev: rev_and_hosts.as_ref().map(|(rev, _)| rev.to_string()),
        hosts: rev_and_hosts.map(|(_, hosts)| hosts).unwrap_or_default(),
        started_at_ms: push.received_at_ms,
    });
    let answer = StatusAnswer {
        forge: service.config.forge.kind.as_str(),
        following: service
            .config
            .follow
            .iter()
            .map(|follow| Following {
                follow: follow.clone(),
                deployed: state.deployed.get(&follow.branch).cloned(),
            })
            .collect(),
        running,
        queued: state.pending.clone(),
        recent: state.history.iter().rev().cloned().collect(),
        pulling: pulling_hosts(&service),
    };
    Json(serde_json::to_value(answer).unwrap_or_default())
}

/// Hooks and rollouts by outcome.
#[derive(Debug, Default)]
pub struct Counters {
    hooks: BTreeMap<&'static str, u64>,
    rollouts: BTreeMap<String, u64>,
    last_rollout_ms: Option<u64>,
}

impl Counters {
    /// A hook answered with `outcome`.
    pub fn hook(&mut self, outcome: &'static str) {
        *self.hooks.entry(outcome).or_default() += 1;
    }

    /// A rollout ended with `outcome` at `at_ms`.
    pub fn rollout(&mut self, outcome: &str, at_ms: u64) {
        *self.rollouts.entry(outcome.to_owned()).or_default() += 1;
        self.last_rollout_ms = Some(at_ms);
    }
}

/// Prometheus metrics.
async fn get_metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
    let queue_length = queue_state(&service).await.pending.len();
    let counters = service.counters();
    let mut text = String::new();
    text.push_str("# HELP deployd_forge_hooks_total Webhooks received, by outcome.\n# TYPE deployd_forge_hooks_total counter\n");
    for outcome in [
        "accepted",
        "ignored",
        "unauthorized",
        "too_large",
        "busy",
        "timed_out",
        "bad_request",
        "not_found",
        "error",
    ] {
        let count = counters.hooks.get(outcome).copied().unwrap_or(0);
        text.push_str(&format!(
            "deployd_forge_hooks_total{{outcome=\"{outcome}\"}} {count}\n"
        ));
    }
    text.push_str("# HELP deployd_forge_rollouts_total Rollouts ended, by outcome.\n# TYPE deployd_forge_rollouts_total counter\n");
    for outcome in ["succeeded", "published", "failed", "unchanged", "error"] {
        let count = counters.rollouts.get(outcome).copied().unwrap_or(0);
        text.push_str(&format!(
            "deployd_forge_rollouts_total{{outcome=\"{outcome}\"}} {count}\n"
        ));
    }
    text.push_str(&format!(
        "# HELP deployd_forge_queue_length Pushes waiting.\n# TYPE deployd_forge_queue_length gauge\ndeployd_forge_queue_length {queue_length}\n"
    ));
    if let Some(at_ms) = counters.last_rollout_ms {
        text.push_str(&format!(
            "# HELP deployd_forge_last_rollout_timestamp_seconds When the last rollout ended.\n# TYPE deployd_forge_last_rollout_timestamp_seconds gauge\ndeployd_forge_last_rollout_timestamp_seconds {}\n",
            at_ms / 1000
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
