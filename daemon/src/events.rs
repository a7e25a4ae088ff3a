//! A deploy's event stream: every state change and log line, then the final
//! record. While a deploy runs, its events are kept in memory with a
//! broadcast channel, so a late subscriber first gets what it missed, then
//! the live events, with no gap between the two (both are taken under one
//! lock). A finished deploy's events are rebuilt from its record and log.

use deployd_protocol::api::{DeployRecord, StateEvent};
use tokio::sync::broadcast;

/// Live events a slow subscriber may fall behind by before it is cut off.
const CHANNEL_CAPACITY: usize = 1024;

/// One event of a deploy.
#[derive(Debug, Clone)]
pub enum DeployEvent {
    /// It entered a state.
    State(StateEvent),
    /// A line of its log.
    Log(String),
    /// It ended; this is the last event.
    Done(Box<DeployRecord>),
}

/// The events of a deploy that is running in this process.
#[derive(Debug)]
pub struct LiveEvents {
    /// Everything so far, for late subscribers.
    history: Vec<DeployEvent>,
    /// The live feed.
    sender: broadcast::Sender<DeployEvent>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        LiveEvents {
            history: Vec::new(),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl LiveEvents {
    /// Records and broadcasts an event.
    pub fn push(&mut self, event: DeployEvent) {
        // No subscriber is not an error.
        let _ = self.sender.send(event.clone());
        self.history.push(event);
    }

    /// What happened so far, and a receiver for what comes next.
    pub fn subscribe(&self) -> (Vec<DeployEvent>, broadcast::Receiver<DeployEvent>) {
        (self.history.clone(), self.sender.subscribe())
    }
}

/// The events of a finished deploy, from its record and its log lines.
pub fn replay(record: &DeployRecord, log_lines: Vec<String>) -> Vec<DeployEvent> {
    let mut events: Vec<DeployEvent> = record
        .phases
        .iter()
        .map(|phase| {
            DeployEvent::State(StateEvent {
                state: phase.state,
                at_ms: phase.started_at_ms,
            })
        })
        .collect();
    events.extend(log_lines.into_iter().map(DeployEvent::Log));
    if record.state.is_final() {
        events.push(DeployEvent::Done(Box::new(record.clone())));
    }
    events
}
