//! Following one deploy to its end through its event stream, reconnecting
//! when the stream drops (the host restarts, the network blips) with the
//! last event's id (`Last-Event-ID`), so the host sends only what was not
//! seen, however a restarted daemon orders its replay. (A host that gives
//! no ids replays every event from the first; those already seen are then
//! skipped by count.) A host too busy to give a stream (`busy`) is asked
//! again, and its record read meanwhile.

use std::time::{Duration, Instant};

use deployd_protocol::api::{event_names, DeployRecord, DeployState, LogEvent, StateEvent};
use futures_util::StreamExt;

use crate::client::{Client, HostError};
use crate::host_error::{Cause, Unreachable};
use crate::inventory::Target;

/// How long a host may stay unreachable while a deploy is followed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// Pause between reconnections.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What the follower reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The deploy entered a state.
    State(DeployState),
    /// A log line.
    Log(String),
    /// The stream dropped; reconnecting.
    Reconnecting(String),
}

/// Follows deploy `id` on `target` until it ends; returns its final record.
pub async fn follow(
    client: &Client,
    target: &Target,
    id: &str,
    mut on_update: impl FnMut(Update),
) -> Result<DeployRecord, HostError> {
    let mut seen = 0usize;
    let mut last_id: Option<String> = None;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let resuming = last_id.is_some();
        let failure = match client.events(target, id, last_id.as_deref()).await {
            Ok(events) => {
                let mut events = std::pin::pin!(events);
                let mut index = 0usize;
                let mut failure = unreachable(Cause::Other("the event stream ended early".into()));
                while let Some(event) = events.next().await {
                    let event = match event {
                        Ok(event) => event,
                        Err(error) => {
                            failure = error;
                            break;
                        }
                    };
                    if let Some(event_id) = &event.id {
                        last_id = Some(event_id.clone());
                    } else if !resuming {
                        index += 1;
                        if index <= seen {
                            continue;
                        }
                        seen = index;
                    }
                    // Only news counts as progress: a stream that connects and
                    // ends at once, again and again, still runs out of time.
                    unreachable_since = None;
                    match event.name.as_str() {
                        event_names::STATE => {
                            if let Ok(state) = serde_json::from_str::<StateEvent>(&event.data) {
                                on_update(Update::State(state.state));
                            }
                        }
                        event_names::LOG => {
                            if let Ok(log) = serde_json::from_str::<LogEvent>(&event.data) {
                                on_update(Update::Log(log.line));
                            }
                        }
                        event_names::DONE => {
                            return serde_json::from_str(&event.data).map_err(|error| {
                                HostError::Protocol(format!("the final record: {error}"))
                            });
                        }
                        _ => {}
                    }
                }
                failure
            }
            // Too many streams open there: not a refusal of the deploy.
            Err(HostError::Refused(body)) if body.error == deployd_protocol::ErrorCode::Busy => {
                unreachable(Cause::Other(format!("the host is busy: {}", body.message)))
            }
            Err(HostError::Refused(body)) => return Err(HostError::Refused(body)),
            // Anything else may be a restart or a proxy in the way: retried.
            Err(error) => error,
        };
        // The stream may have ended because the deploy did; ask directly.
        // A deploy waiting for its confirm is announced again, so a confirm
        // lost with the stream is sent anew.
        if let Ok(record) = client.record(target, id).await {
            if record.state.is_final() {
                return Ok(record);
            }
            if record.state == DeployState::AwaitingConfirm {
                on_update(Update::State(record.state));
            }
        }
        let since = *unreachable_since.get_or_insert_with(Instant::now);
        if since.elapsed() > GIVE_UP_AFTER {
            return Err(match failure {
                HostError::Unreachable(_) => failure,
                other => unreachable(Cause::Other(other.to_string())),
            });
        }
        on_update(Update::Reconnecting(failure.to_string()));
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// A host that stopped answering the stream, for `cause`.
fn unreachable(cause: Cause) -> HostError {
    HostError::Unreachable(Box::new(Unreachable {
        url: None,
        cause,
        error: None,
    }))
}
