//! `GET /v1/deploys/{id}/events`: Server-Sent Events. First every event so
//! far, then the live ones, then `done` with the final record, and the
//! stream ends. Each event's `id` is its cursor (`PHASES.LINES`); a client
//! that reconnects with `Last-Event-ID` gets only what it has not seen.
//! Open, or behind a signed `read` (config).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use deployd_protocol::api::{event_names, LogEvent};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;

use super::deploys::quote_id;
use super::ApiError;
use crate::daemon::Daemon;
use crate::events::{Cursor, DeployEvent, Positioned};

/// Streams a deploy's events; with `Last-Event-ID` (a reconnecting
/// client), only those it has not seen.
pub async fn deploy_events(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(Cursor::parse);
    let permit = daemon
        .lifecycle
        .stream_permit()
        .ok_or(ApiError::TooManyStreams)?;
    let (history, receiver) = daemon
        .subscribe(&id)
        .ok_or_else(|| ApiError::NotFound(quote_id(&id)))?;
    let finished = history
        .iter()
        .any(|(event, _)| matches!(event, DeployEvent::Done(_)));
    let past = stream::iter(history.into_iter().map(|(event, at)| (event, Some(at))));
    let live = match (receiver, finished) {
        (Some(receiver), false) => live_events(receiver).left_stream(),
        _ => stream::empty().right_stream(),
    };
    let unseen = move |(event, at): &(DeployEvent, Option<Cursor>)| {
        let show = match (seen, at) {
            (Some(seen), Some(at)) => !seen.has_seen(event, *at),
            _ => true,
        };
        std::future::ready(show)
    };
    // The stream ends at shutdown too, and holds its permit until it ends.
    let events = past
        .chain(live)
        .filter(unseen)
        .take_until(daemon.lifecycle.shutdown_token().cancelled_owned())
        .map(move |(event, at)| {
            let _held = &permit;
            Ok(to_sse(&event, at))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Live events until `done` (included), or until the channel closes. A
/// note that some were dropped for a slow reader has no cursor.
fn live_events(
    receiver: broadcast::Receiver<Positioned>,
) -> impl Stream<Item = (DeployEvent, Option<Cursor>)> {
    stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Ok((event @ DeployEvent::Done(_), at)) => Some(((event, Some(at)), None)),
            Ok((event, at)) => Some(((event, Some(at)), Some(receiver))),
            // A slow reader missed some lines; say so and go on.
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let note = format!("deployd: {missed} events were dropped for this reader");
                Some(((DeployEvent::Log(note), None), Some(receiver)))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

fn to_sse(event: &DeployEvent, at: Option<Cursor>) -> Event {
    let (name, data) = match event {
        DeployEvent::State(state) => (event_names::STATE, serde_json::to_string(state)),
        DeployEvent::Log(line) => (
            event_names::LOG,
            serde_json::to_string(&LogEvent { line: line.clone() }),
        ),
        DeployEvent::Done(record) => (event_names::DONE, serde_json::to_string(record)),
    };
    let event = Event::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".to_owned()));
    match at {
        Some(at) => event.id(at.to_string()),
        None => event,
    }
}
