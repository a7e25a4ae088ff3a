//! Event fan-out: the live events of the deploys running in this process,
//! each with its subscribers. Its own lock, held only to push or subscribe,
//! never across I/O. Lock order: the daemon's records lock may be held while
//! this one is taken (so a deploy and its events appear together), never the
//! other way round.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use deployd_protocol::DeployId;
use tokio::sync::broadcast;

use crate::events::{DeployEvent, LiveEvents, Positioned};

/// The live events of every running deploy.
#[derive(Debug, Default)]
pub struct Fanout {
    /// Events per running deploy; removed once its `done` is sent.
    live: Mutex<HashMap<DeployId, LiveEvents>>,
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, HashMap<DeployId, LiveEvents>> {
        // Every change is whole: a poisoned lock still holds usable data.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `id`'s events live, starting with `events`.
    pub fn open(&self, id: &DeployId, events: impl IntoIterator<Item = DeployEvent>) {
        let mut live = LiveEvents::default();
        for event in events {
            live.push(event);
        }
        self.lock().insert(id.clone(), live);
    }

    /// Sends `event` to `id`'s subscribers, if it is live.
    pub fn push(&self, id: &DeployId, event: DeployEvent) {
        if let Some(live) = self.lock().get_mut(id) {
            live.push(event);
        }
    }

    /// Sends `id`'s last events and ends its streams.
    pub fn close(&self, id: &DeployId, last: impl IntoIterator<Item = DeployEvent>) {
        if let Some(mut live) = self.lock().remove(id) {
            for event in last {
                live.push(event);
            }
        }
    }

    /// The events so far and a receiver for the rest, while `id` is live.
    pub fn subscribe(
        &self,
        id: &DeployId,
    ) -> Option<(Vec<Positioned>, broadcast::Receiver<Positioned>)> {
        self.lock().get(id).map(LiveEvents::subscribe)
    }
}
