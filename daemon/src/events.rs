//! A deploy's event stream: every state change and log line, then the final
//! record. While a deploy runs, its events are kept in memory with a
//! broadcast channel, so a late subscriber first gets what it missed, then
//! the live events, with no gap between the two (both are taken under one
//! lock). A finished deploy's events are rebuilt from its record and log.
//!
//! Every event carries a [`Cursor`]: how many phases and log lines the
//! deploy had once it happened. Phases are in the record and lines in the
//! log file, so a cursor means the same in a restarted daemon, and a client
//! that reconnects with it (SSE `Last-Event-ID`) gets exactly what it missed,
//! whatever order the events are replayed in.

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

/// Where in a deploy an event stands: the phases and log lines it had once
/// the event happened. Written `PHASES.LINES` (an SSE event id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Phases so far.
    pub phases: usize,
    /// Log lines so far.
    pub lines: usize,
}

impl Cursor {
    /// Moves past `event`.
    fn after(mut self, event: &DeployEvent) -> Cursor {
        match event {
            DeployEvent::State(_) => self.phases += 1,
            DeployEvent::Log(_) => self.lines += 1,
            DeployEvent::Done(_) => {}
        }
        self
    }

    /// Whether a client that saw up to `self` has seen `event`, which
    /// stands at `at`. `done` is never seen before it ends the stream.
    pub fn has_seen(&self, event: &DeployEvent, at: Cursor) -> bool {
        match event {
            DeployEvent::State(_) => at.phases <= self.phases,
            DeployEvent::Log(_) => at.lines <= self.lines,
            DeployEvent::Done(_) => false,
        }
    }

    /// Reads `PHASES.LINES`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (phases, lines) = text.trim().split_once('.')?;
        Some(Cursor {
            phases: phases.parse().ok()?,
            lines: lines.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.phases, self.lines)
    }
}

/// An event and where it stands.
pub type Positioned = (DeployEvent, Cursor);

/// The events of a deploy that is running in this process.
#[derive(Debug)]
pub struct LiveEvents {
    /// Everything so far, for late subscribers.
    history: Vec<Positioned>,
    /// Where the deploy stands.
    cursor: Cursor,
    /// The live feed.
    sender: broadcast::Sender<Positioned>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        LiveEvents {
            history: Vec::new(),
            cursor: Cursor::default(),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl LiveEvents {
    /// Records and broadcasts an event.
    pub fn push(&mut self, event: DeployEvent) {
        self.cursor = self.cursor.after(&event);
        let positioned = (event, self.cursor);
        // No subscriber is not an error.
        let _ = self.sender.send(positioned.clone());
        self.history.push(positioned);
    }

    /// What happened so far, and a receiver for what comes next.
    pub fn subscribe(&self) -> (Vec<Positioned>, broadcast::Receiver<Positioned>) {
        (self.history.clone(), self.sender.subscribe())
    }
}

/// The events of a deploy from its record and its log lines (a finished
/// deploy, or one a restarted daemon resumes): the phases, then the lines.
pub fn replay(record: &DeployRecord, log_lines: Vec<String>) -> Vec<Positioned> {
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
    let mut cursor = Cursor::default();
    events
        .into_iter()
        .map(|event| {
            cursor = cursor.after(&event);
            (event, cursor)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployd_protocol::api::{DeployState, PhaseRecord};

    fn state(state: DeployState) -> DeployEvent {
        DeployEvent::State(StateEvent { state, at_ms: 1 })
    }

    #[test]
    fn a_cursor_means_the_same_live_and_replayed() {
        // Live: phases and lines interleaved.
        let mut live = LiveEvents::default();
        live.push(state(DeployState::Received));
        live.push(DeployEvent::Log("one".into()));
        live.push(state(DeployState::Fetching));
        live.push(DeployEvent::Log("two".into()));
        let (history, _) = live.subscribe();
        let seen = history[2].1; // after "fetching"
        assert_eq!(seen.to_string(), "2.1");
        assert_eq!(Cursor::parse("2.1"), Some(seen));
        assert_eq!(Cursor::parse("2"), None);

        // Replayed by a restarted daemon: phases first, then lines.
        let mut record: DeployRecord = serde_json::from_value(serde_json::json!({
            "deploy_id": "d", "host": "h",
            "store_path": "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x",
            "action": "switch", "flake": null, "rev": null, "key": "k",
            "issued_at": 1, "state": "fetching", "phases": [], "error": null,
            "previous_system": null, "reboot_required": false, "log_tail": [],
            "created_at_ms": 1, "finished_at_ms": null
        }))
        .expect("record");
        for state in [DeployState::Received, DeployState::Fetching] {
            record.phases.push(PhaseRecord {
                state,
                started_at_ms: 1,
                ended_at_ms: None,
            });
        }
        let replayed = replay(&record, vec!["one".into(), "two".into()]);
        let unseen: Vec<&DeployEvent> = replayed
            .iter()
            .filter(|(event, at)| !seen.has_seen(event, *at))
            .map(|(event, _)| event)
            .collect();
        // What the client missed is exactly the line "two".
        assert!(
            matches!(unseen.as_slice(), [DeployEvent::Log(line)] if line == "two"),
            "{unseen:?}"
        );
    }
}
