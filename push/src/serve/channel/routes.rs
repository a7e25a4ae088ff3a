//! The channel's HTTP API (docs/src/design/channels.md), every answer with
//! `Deployd-Channel: push-serve` and errors as the daemon's JSON. A path
//! parameter is a whole segment, so the router matches `{file}` and the
//! handlers take it as `{host}.json`.
//! - `GET /v1/channel/hosts/{file}` (anyone: the state is signed): the
//!   state held, byte for byte (`404` none). With `?after=N` it answers
//!   `304` unless the state's sequence is above N; with `&wait=S` (at most
//!   60) it holds the request until one is, or `304` at the end. Long polls
//!   are bounded ([`super::polls`]): `429` over a client's share, `503`
//!   over all.
//! - `PUT /v1/channel/hosts/{file}` (a key that may publish): a state
//!   verified as a host verifies it (signature by push serve's key or a
//!   `[channel] publishers` key over the exact bytes, kind deploy, this
//!   host, its window) with a sequence above the one held (`409 replayed`);
//!   `200 {"sequence": N}`, then the long polls wake.
//! - `POST /v1/channel/reports/{host}` (the host, by its pinned
//!   `host_key`): kept when it is the newest; `204`.
//! - `GET /v1/channel/reports/{host}` (anyone): the newest report push
//!   serve verified, as JSON (`404` none).
//! - `ANY /v1/channel` and `ANY /v1/channel/{*rest}`: any other path of
//!   the channel, `404 not_found`.
//!
//! The host must be one of push.toml (as last fetched): `404` otherwise.
//! Bodies announce their length and are at most an envelope's size,
//! checked before a byte is read. These routes are outside the 30-second
//! request limit of the others (see the router in `api.rs`): a long poll
//! lasts up to a minute, and a body's read has its own limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use deployd_protocol::{
    DesiredArrival, ErrorCode, HostName, HostReport, MemoryNonceStore, SystemClock, Verifier,
    LONGEST_DESIRED_AGE_S, MAX_ENVELOPE_BYTES,
};

use super::super::api::{error, error_with_status};
use super::super::hook_body::BodyError;
use super::super::Service;
use super::{summarize, FleetHost, Held, Kept, PollRefusal};

/// The header every channel answer carries: a host long-polls a channel
/// that answers with it.
pub const CHANNEL_HEADER: &str = "deployd-channel";
/// Its value.
pub const CHANNEL_HEADER_VALUE: &str = "push-serve";
/// The longest long poll, in seconds.
pub const LONGEST_WAIT_S: u64 = 60;

/// Marks every channel answer as push serve's (`Deployd-Channel: push-serve`).
pub async fn mark_as_push_serve(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(CHANNEL_HEADER),
        HeaderValue::from_static(CHANNEL_HEADER_VALUE),
    );
    response
}

/// Any other path of the channel: `404 not_found`.
pub async fn no_such_thing() -> Response {
    error(
        ErrorCode::NotFound,
        "the channel has hosts/{host}.json and reports/{host}",
    )
}

/// The host named in the path (`{host}.json` or `{host}`), if push.toml
/// has it; else why not (a `404`).
fn fleet_host(
    service: &Service,
    written: &str,
    suffix: &str,
) -> Result<(HostName, FleetHost), String> {
    let name = written
        .strip_suffix(suffix)
        .ok_or_else(|| format!("a host's state is hosts/{{host}}{suffix}"))?;
    let unknown = || {
        format!(
            "{:?} is not a host of push.toml",
            name.chars().take(64).collect::<String>()
        )
    };
    let host: HostName = name.parse().map_err(|_| unknown())?;
    let Some(fleet) = service.channel.fleet() else {
        return Err(
            "push serve has not read push.toml yet (it does at its first rollout): it knows no host"
                .to_owned(),
        );
    };
    let entry = fleet.get(&host).cloned().ok_or_else(unknown)?;
    Ok((host, entry))
}

/// `?after=N&wait=S`, as written (read into numbers by the handler, so
/// that a bad value is its `400` with the daemon's JSON).
#[derive(Debug, serde::Deserialize)]
pub struct LongPollQuery {
    /// The sequence the host has.
    after: Option<String>,
    /// How long to hold the request, in seconds.
    wait: Option<String>,
}

/// `?after=N&wait=S`, read.
#[derive(Debug, Clone, Copy)]
struct LongPoll {
    after: u64,
    wait: Duration,
}

fn read_long_poll(query: &LongPollQuery) -> Result<Option<LongPoll>, String> {
    let after = match &query.after {
        None if query.wait.is_some() => return Err("wait goes with after".into()),
        None => return Ok(None),
        Some(after) => after
            .parse::<u64>()
            .map_err(|_| format!("after={after:?} is not a whole number"))?,
    };
    let wait = match &query.wait {
        None => 0,
        Some(wait) => match wait.parse::<u64>() {
            Ok(seconds) if seconds <= LONGEST_WAIT_S => seconds,
            _ => {
                return Err(format!(
                    "wait={wait:?} must be a whole number of seconds, at most {LONGEST_WAIT_S}"
                ))
            }
        },
    };
    Ok(Some(LongPoll {
        after,
        wait: Duration::from_secs(wait),
    }))
}

fn state_answer(held: &Held) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(held.bytes.to_vec()),
    )
        .into_response()
}

/// The state held for a host, byte for byte: at once, or once newer than `after` (a long poll of up to `wait` seconds), else `304`.
pub async fn get_state(
    State(service): State<Arc<Service>>,
    Path(file): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    query: Result<Query<LongPollQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (host, _) = match fleet_host(&service, &file, ".json") {
        Ok(found) => found,
        Err(why) => return error(ErrorCode::NotFound, why),
    };
    let poll = match query
        .map_err(|rejection| rejection.body_text())
        .and_then(|Query(query)| read_long_poll(&query))
    {
        Ok(poll) => poll,
        Err(why) => return error(ErrorCode::BadRequest, why),
    };
    let channel = &service.channel;
    let Some(poll) = poll else {
        return match channel.held(&host) {
            Some(held) => state_answer(&held),
            None => error(
                ErrorCode::NotFound,
                format!("the channel holds no desired state for {host}"),
            ),
        };
    };
    let newer = |held: &Option<Held>| {
        held.clone()
            .filter(|held| held.summary.sequence > poll.after)
    };
    if let Some(held) = newer(&channel.held(&host)) {
        return state_answer(&held);
    }
    if poll.wait.is_zero() {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let _permit = match channel.polls.take(client) {
        Ok(permit) => permit,
        Err(refusal) => {
            let status = match refusal {
                PollRefusal::ClientFull => StatusCode::TOO_MANY_REQUESTS,
                PollRefusal::Full => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut answer = error_with_status(status, ErrorCode::Busy, refusal.to_string());
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(LONGEST_WAIT_S));
            return answer;
        }
    };
    let mut watch = channel.watch_held(&host);
    let deadline = tokio::time::sleep(poll.wait);
    tokio::pin!(deadline);
    loop {
        if let Some(held) = newer(&watch.borrow_and_update()) {
            return state_answer(&held);
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() {
                return StatusCode::NOT_MODIFIED.into_response();
            },
            () = &mut deadline => return StatusCode::NOT_MODIFIED.into_response(),
            () = service.shutdown.cancelled() => {
                return error_with_status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Busy,
                    "push serve is stopping; ask again",
                );
            }
        }
    }
}

/// Reads a publish's or a report's body, within the channel's limits.
async fn read_body(
    service: &Service,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, Response> {
    let bodies = &service.channel.bodies;
    let read = match bodies.announced_length(headers) {
        Ok(length) => bodies.read(body, length).await,
        Err(refusal) => Err(refusal),
    };
    read.map_err(refuse_body)
}

fn refuse_body(refusal: BodyError) -> Response {
    let (status, code, message) = match &refusal {
        BodyError::LengthRequired => (
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::BadRequest,
            "announce the body's length (Content-Length)".to_owned(),
        ),
        BodyError::UnreadableLength => (
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the Content-Length is not a number".to_owned(),
        ),
        BodyError::TooLarge { announced, .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!(
                "an envelope is at most {MAX_ENVELOPE_BYTES} bytes; this one announced {announced}"
            ),
        ),
        BodyError::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "too many large bodies are being read; try again".to_owned(),
        ),
        BodyError::TimedOut(limit) => (
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadRequest,
            format!("the body did not arrive within {limit:?}"),
        ),
        BodyError::Read(_) => (
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the body could not be read".to_owned(),
        ),
        BodyError::WrongLength {
            announced,
            received,
        } => (
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("the body is {received} bytes, not the {announced} announced"),
        ),
    };
    let mut answer = error_with_status(status, code, message);
    if let BodyError::Busy { retry_after } = refusal {
        answer.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.as_secs()),
        );
    }
    answer
}

/// Publishes a host's next desired state, verified as the host verifies it; wakes its long polls.
pub async fn put_state(
    State(service): State<Arc<Service>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (host, _) = match fleet_host(&service, &file, ".json") {
        Ok(found) => found,
        Err(why) => return error(ErrorCode::NotFound, why),
    };
    let bytes = match read_body(&service, &headers, body).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let channel = &service.channel;
    let _one_at_a_time = channel.lock_publishing().await;
    let held = channel.held(&host).map(|held| held.summary.sequence);
    let verifier = Verifier::new(
        channel.publishers().clone(),
        host.clone(),
        Box::new(SystemClock),
    );
    let arrival = DesiredArrival {
        last_sequence: held,
        active_issued_at: None,
        max_age_s: LONGEST_DESIRED_AGE_S,
    };
    // A fresh nonce store: the sequence, checked against the one held, is
    // what refuses the same state twice.
    let verified = match verifier.verify_desired(&bytes, &arrival, &mut MemoryNonceStore::default())
    {
        Ok(verified) => verified,
        Err(refusal) => {
            log::debug!("refused a desired state for {host}: {refusal}");
            return error(refusal.code(), refusal.to_string());
        }
    };
    let summary = match summarize(&bytes) {
        Ok(summary) => summary,
        Err(cause) => return error(ErrorCode::BadRequest, format!("{cause:#}")),
    };
    let deploy_id = summary.deploy_id.clone().unwrap_or_default();
    let signed_by_service = channel.is_own_key(&verified.verified.key);
    if let Err(cause) = channel.hold(&host, bytes, summary, signed_by_service).await {
        log::error!("cannot hold the desired state of {host}: {cause:#}");
        return error(
            ErrorCode::Internal,
            "the state could not be written; the service's log has the details",
        );
    }
    log::info!(
        host = host.as_str(), deploy_id = deploy_id.as_str();
        "holds desired state {} for {host}, signed by {}", verified.sequence, verified.verified.key
    );
    (
        StatusCode::OK,
        Json(serde_json::json!({ "sequence": verified.sequence })),
    )
        .into_response()
}

/// Takes a host's report, signed by its pinned host key; keeps the newest.
pub async fn post_report(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (host, entry) = match fleet_host(&service, &name, "") {
        Ok(found) => found,
        Err(why) => return error(ErrorCode::NotFound, why),
    };
    let Some(host_key) = entry.host_key else {
        return error(
            ErrorCode::Forbidden,
            format!("push.toml pins no host_key for {host}: pin its host key (its /v1/status shows it) as [hosts.{host}] host_key for its reports to be taken"),
        );
    };
    let bytes = match read_body(&service, &headers, body).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let report = match HostReport::verify(&bytes, &host, &host_key, crate::sign::now()) {
        Ok(report) => report,
        Err(refusal) => {
            log::debug!("refused a report from {host}: {refusal}");
            return error(refusal.code(), refusal.to_string());
        }
    };
    let kept = service
        .channel
        .keep_report(&host, report.clone(), bytes)
        .await;
    match kept {
        Ok(Kept::Older { kept_sent_at }) => error(
            ErrorCode::Replayed,
            format!(
                "a report of {host} sent at {kept_sent_at} is kept; this one was sent at {}",
                report.sent_at
            ),
        ),
        Ok(Kept::Same) => StatusCode::NO_CONTENT.into_response(),
        Ok(Kept::Newest { awaited }) => {
            log::info!(
                host = host.as_str(), deploy_id = report.record.deploy_id.as_str();
                "{host} reports deploy {} {}", report.record.deploy_id, report.record.state
            );
            if !awaited {
                super::publish::report_on_the_commit(&service, &host, &report);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(cause) => {
            log::error!("cannot keep the report of {host}: {cause:#}");
            error(
                ErrorCode::Internal,
                "the report could not be written; the service's log has the details",
            )
        }
    }
}

/// The newest report of a host, as push serve verified it, without its
/// log's last lines: anyone may ask, and a log may say more than a state
/// (the full report stays on disk).
pub async fn get_report(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    let (host, _) = match fleet_host(&service, &name, "") {
        Ok(found) => found,
        Err(why) => return error(ErrorCode::NotFound, why),
    };
    match service.channel.report(&host) {
        Some(kept) => {
            let mut report = kept.report.clone();
            report.record.log_tail = Vec::new();
            Json(report).into_response()
        }
        None => error(
            ErrorCode::NotFound,
            format!("push serve has no report of {host} yet"),
        ),
    }
}
