//! A deploy's progress: every change is written to disk before the step it
//! announces is taken, then told to its subscribers, the journal and
//! systemd. A deploy's end reaches its subscribers even when the disk
//! refuses it, so no event stream waits for ever.

use deployd_command::redact::mask_credentials;
use deployd_protocol::api::{DeployFailure, DeployRecord, DeployState, PhaseRecord, StateEvent};
use deployd_protocol::DeployId;

use super::{off_the_runtime, Daemon};
use crate::clock::now_ms;
use crate::events::DeployEvent;
use crate::state::{StateError, StoredDeploy};

impl Daemon {
    /// Changes a deploy's progress and writes it down, before the step it
    /// announces is taken.
    pub fn update(
        &self,
        id: &DeployId,
        change: impl FnOnce(&mut StoredDeploy),
    ) -> Result<StoredDeploy, StateError> {
        off_the_runtime(|| {
            let mut records = self.records();
            let mut deploy = records
                .store
                .get(id.as_str())
                .cloned()
                .ok_or_else(|| missing_record(id))?;
            change(&mut deploy);
            records.store.save(&deploy)?;
            Ok(deploy)
        })
    }

    /// Moves a deploy to `state` (not a final one: see [`Daemon::finish`]).
    pub fn enter(&self, id: &DeployId, state: DeployState) -> Result<(), StateError> {
        self.enter_with(id, state, |_| {})
    }

    /// Moves a deploy to `state` and makes `change` to it, in one write.
    pub fn enter_with(
        &self,
        id: &DeployId,
        state: DeployState,
        change: impl FnOnce(&mut StoredDeploy),
    ) -> Result<(), StateError> {
        let now = now_ms();
        let deploy = self.update(id, |deploy| {
            change(deploy);
            close_phase(&mut deploy.record, now);
            deploy.record.state = state;
            deploy.record.phases.push(PhaseRecord {
                state,
                started_at_ms: now,
                ended_at_ms: None,
            });
        })?;
        self.fanout
            .push(id, DeployEvent::State(StateEvent { state, at_ms: now }));
        deployd_service::notify::status(&format!("deploy {id}: {state}"));
        log::info!(
            deploy_id = id.as_str(),
            store_path = deploy.record.store_path.as_str();
            "deploy {id}: {state}"
        );
        Ok(())
    }

    /// Ends a deploy in `state` (succeeded, failed or rolled back).
    pub fn finish(
        &self,
        id: &DeployId,
        state: DeployState,
        failure: Option<DeployFailure>,
    ) -> Result<DeployRecord, StateError> {
        let now = now_ms();
        // The one way an error enters a record: no credentials in it.
        let failure = failure.map(|failure| DeployFailure {
            message: mask_credentials(&failure.message).into_owned(),
            ..failure
        });
        let written = self.update(id, |deploy| {
            close_phase(&mut deploy.record, now);
            deploy.record.state = state;
            deploy.record.phases.push(PhaseRecord {
                state,
                started_at_ms: now,
                ended_at_ms: Some(now),
            });
            deploy.record.error = failure.clone();
            deploy.record.finished_at_ms = Some(now);
        });
        // Memory has the end even when the disk refused it: everyone
        // following the deploy is told, and the error is returned after.
        let record = match &written {
            Ok(deploy) => deploy.record.clone(),
            Err(_) => match self.deploy(id.as_str()) {
                Some(deploy) if deploy.record.state == state => deploy.record,
                _ => return written.map(|deploy| deploy.record),
            },
        };
        self.count(&record);
        self.fanout.close(
            id,
            [
                DeployEvent::State(StateEvent { state, at_ms: now }),
                DeployEvent::Done(Box::new(record.clone())),
            ],
        );
        self.deploy_log.forget(id);
        deployd_service::notify::status(&format!("idle; deploy {id} {state}"));
        let reason = failure
            .as_ref()
            .map_or("", |failure| failure.message.as_str());
        match state {
            DeployState::Succeeded => log::info!(deploy_id = id.as_str(); "deploy {id}: succeeded"),
            _ => log::warn!(deploy_id = id.as_str(); "deploy {id}: {state}: {reason}"),
        }
        written.map(|_| record)
    }

    /// Makes a deploy found unfinished at start live again, so its events
    /// stream while it is finished: its phases and the lines of its log so
    /// far, so event cursors go on from where the previous daemon's left off.
    pub fn revive(&self, id: &DeployId) {
        let Some((record, log_file)) = ({
            let records = self.records();
            records
                .store
                .get(id.as_str())
                .map(|deploy| (deploy.record.clone(), records.store.log_file(id)))
        }) else {
            return;
        };
        let lines = read_log_lines(&log_file);
        let events = crate::events::replay(&record, lines)
            .into_iter()
            .map(|(event, _)| event);
        self.fanout.open(id, events);
    }
}

/// The lines of a deploy's log file (none when it is missing), credentials
/// masked: a log written by an earlier deployd may hold them.
pub(super) fn read_log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .map(|line| mask_credentials(line).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn close_phase(record: &mut DeployRecord, now: u64) {
    if let Some(phase) = record.phases.last_mut() {
        phase.ended_at_ms.get_or_insert(now);
    }
}

fn missing_record(id: &DeployId) -> StateError {
    StateError::Io {
        action: "finding the record of",
        path: id.as_str().into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}
