//! Admission: who may start a deploy, a rollback or a confirm. A message is
//! verified over the bytes received (signature, key, host, window, nonce,
//! downgrade), then the rules: an id never reused, no store path in
//! quarantine (unless `retry_failed`), one deploy at a time, the very same
//! envelope again answers the deploy it started. A new deploy is
//! recorded (nonce first, then envelope and record) and made live before the
//! records lock is released. Errors are the domain's; the API maps them.

use deployd_protocol::api::{DeployAccepted, DeployRecord, DeployState, PhaseRecord, StateEvent};
use deployd_protocol::{
    Action, Arrival, DeployId, DeployRequest, Endpoint, KeyName, RejectError, Request, Revision,
    StorePath, Verified,
};

use super::{Daemon, Records};
use crate::clock::now_ms;
use crate::events::DeployEvent;
use crate::state::{PendingNonce, Progress, StateError, StoredDeploy};
use crate::system::Profile;

/// What an accepted message leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new deploy, recorded: its pipeline is to be started.
    New(DeployAccepted),
    /// A client's retry of the envelope that started this deploy.
    Retry(DeployAccepted),
}

impl Admission {
    /// The answer for the client.
    pub fn accepted(&self) -> &DeployAccepted {
        match self {
            Admission::New(accepted) | Admission::Retry(accepted) => accepted,
        }
    }
}

/// Why a message was refused, or could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// It failed verification.
    #[error(transparent)]
    Rejected(#[from] RejectError),
    /// Its nonce was used before, and it is not a retry of the same envelope.
    #[error("this message's nonce was already used")]
    Replayed,
    /// A desired state issued before the last one this host applied, from
    /// any channel.
    #[error("this desired state was issued before the last desired state this host applied")]
    IssuedBeforeLastApplied,
    /// A new message reuses the id of an earlier deploy.
    #[error("deploy id {0} was already used")]
    DeployIdReused(DeployId),
    /// A deploy is running.
    #[error("deploy {0} is running; one deploy at a time")]
    Busy(DeployId),
    /// The store path failed or rolled back here within `quarantine_s`,
    /// and the request does not say `retry_failed`.
    #[error(transparent)]
    Quarantined(#[from] super::Quarantined),
    /// A confirm names no deploy this host has.
    #[error("no deploy {0}")]
    NotFound(DeployId),
    /// A rollback with nothing to go back to.
    #[error("there is no previous generation to roll back to")]
    NoPreviousGeneration,
    /// A confirm of a deploy that does not wait for one.
    #[error("deploy {id} is {state}, not waiting for confirmation")]
    NotAwaitingConfirm {
        /// The deploy.
        id: DeployId,
        /// Where it stands.
        state: DeployState,
    },
    /// A confirm after the window closed, or once the rollback began.
    #[error("deploy {0}: its confirmation window has closed")]
    WindowClosed(DeployId),
    /// The host's state could not be written or read.
    #[error("recording the deploy failed")]
    State(#[from] StateError),
    /// Something that cannot happen did.
    #[error("{0}")]
    Inconsistent(String),
}

/// What a new deploy is, before it is recorded.
pub(super) struct NewDeploy {
    /// Its id.
    pub(super) deploy_id: DeployId,
    /// The system.
    pub(super) store_path: StorePath,
    /// What to do with it.
    pub(super) action: Action,
    /// The flake it was built from, when the sender says.
    pub(super) flake: Option<String>,
    /// The revision it was built from, when the sender says.
    pub(super) rev: Option<Revision>,
    /// For a requested rollback: the generation to return to.
    pub(super) rollback_to_generation: Option<u64>,
    /// Magic rollback's window, when asked for.
    pub(super) confirm_within_s: Option<u64>,
    /// The specialisation the request asks for.
    pub(super) specialisation: Option<String>,
    /// Whether the quarantine of its store path is checked: for a `deploy`
    /// without `retry_failed`; never for a requested rollback.
    pub(super) quarantine_applies: bool,
    /// The key that signed its message.
    pub(super) key: KeyName,
    /// When its message was issued (Unix seconds).
    pub(super) issued_at: u64,
    /// The end of its message's validity window (Unix seconds).
    pub(super) expires_at: u64,
}

impl NewDeploy {
    /// The deploy a verified `deploy` message (or desired state) asks for.
    /// `(issued_at, expires_at)` is its message's window.
    pub(super) fn requested(request: DeployRequest, key: KeyName, window: (u64, u64)) -> NewDeploy {
        NewDeploy {
            deploy_id: request.deploy_id,
            store_path: request.store_path,
            action: request.action,
            flake: request.flake,
            rev: request.rev,
            rollback_to_generation: None,
            confirm_within_s: request.confirm_within_s,
            specialisation: request.specialisation,
            quarantine_applies: !request.retry_failed,
            key,
            issued_at: window.0,
            expires_at: window.1,
        }
    }
}

impl Daemon {
    /// Handles `POST /v1/deploy`: verifies, refuses or records the deploy.
    pub fn accept_deploy(&self, bytes: &[u8]) -> Result<Admission, AdmissionError> {
        let mut records = self.records();
        let records = &mut *records;
        let Some((verified, pending)) = self.admit(records, bytes, Endpoint::Deploy)? else {
            return retry(records, bytes);
        };
        let window = (verified.message.issued_at, verified.message.expires_at);
        let Request::Deploy(request) = verified.message.request else {
            return Err(AdmissionError::Inconsistent(
                "the verifier passed a non-deploy message".into(),
            ));
        };
        let new = NewDeploy::requested(request, verified.key, window);
        self.record_new(records, new, pending, bytes)
    }

    /// Handles `POST /v1/rollback`: a new deploy, with the id the message
    /// names, back to the profile's previous generation.
    pub fn accept_rollback(&self, bytes: &[u8]) -> Result<Admission, AdmissionError> {
        // The profile is read before the lock is taken (no I/O under it).
        let profile = Profile::new(&self.config().file.activation.system_profile);
        let current = profile.current_generation();
        let previous = profile
            .generations()
            .into_iter()
            .rfind(|generation| Some(generation.number) < current);
        let mut records = self.records();
        let records = &mut *records;
        let Some((verified, pending)) = self.admit(records, bytes, Endpoint::Rollback)? else {
            return retry(records, bytes);
        };
        let Request::Rollback(reference) = verified.message.request else {
            return Err(AdmissionError::Inconsistent(
                "the verifier passed a non-rollback message".into(),
            ));
        };
        let previous = previous.ok_or(AdmissionError::NoPreviousGeneration)?;
        let store_path: StorePath = previous.system.parse().map_err(|error| {
            AdmissionError::Inconsistent(format!("generation {}: {error}", previous.number))
        })?;
        // The revision it was built from, when a kept deploy says so.
        let built_from = records.store.newest_first().find(|deploy| {
            deploy.record.store_path == store_path && deploy.record.state == DeployState::Succeeded
        });
        let new = NewDeploy {
            deploy_id: reference.deploy_id,
            rev: built_from.and_then(|deploy| deploy.record.rev.clone()),
            flake: built_from.and_then(|deploy| deploy.record.flake.clone()),
            store_path,
            action: Action::Switch,
            rollback_to_generation: Some(previous.number),
            confirm_within_s: None,
            specialisation: None,
            quarantine_applies: false,
            key: verified.key,
            issued_at: verified.message.issued_at,
            expires_at: verified.message.expires_at,
        };
        self.record_new(records, new, pending, bytes)
    }

    /// Handles `POST /v1/deploys/{id}/confirm`: a signed `confirm` of a
    /// deploy that waits for it. A confirm of a deploy already confirmed (a
    /// retry) answers the same; of one not waiting, `bad_request`. The
    /// message is verified before the id is looked up, so that only a
    /// trusted signature learns whether a deploy exists.
    pub fn confirm(&self, bytes: &[u8], id: &DeployId) -> Result<DeployAccepted, AdmissionError> {
        let mut records = self.records();
        let records = &mut *records;
        let verified = self.admit(records, bytes, Endpoint::Confirm { deploy_id: id })?;
        let Some(deploy) = records.store.get(id.as_str()).cloned() else {
            return Err(AdmissionError::NotFound(id.clone()));
        };
        if deploy.progress.confirmed {
            return Ok(accepted(id));
        }
        let Some((_, pending)) = verified else {
            return Err(AdmissionError::Replayed);
        };
        if deploy.record.state != DeployState::AwaitingConfirm {
            return Err(AdmissionError::NotAwaitingConfirm {
                id: id.clone(),
                state: deploy.record.state,
            });
        }
        let window_open = deploy
            .progress
            .confirm_deadline_ms
            .is_some_and(|deadline| now_ms() < deadline);
        if !window_open || deploy.progress.rolling_back.is_some() {
            return Err(AdmissionError::WindowClosed(id.clone()));
        }
        let mut confirmed = deploy;
        confirmed.progress.confirmed = true;
        records.nonces.commit(pending, now_ms() / 1000)?;
        records.store.save(&confirmed)?;
        self.lifecycle.confirmation_arrived();
        log::info!(deploy_id = id.as_str(); "deploy {id} confirmed");
        Ok(accepted(id))
    }

    /// Verifies a message that starts a deploy. `None` when its nonce was
    /// seen: the caller checks for a retry of the very same envelope.
    fn admit(
        &self,
        records: &mut Records,
        bytes: &[u8],
        endpoint: Endpoint<'_>,
    ) -> Result<Option<(Verified, PendingNonce)>, AdmissionError> {
        let arrival = Arrival {
            endpoint,
            active_issued_at: records.store.active().map(|active| active.issued_at),
        };
        let mut pending = PendingNonce::default();
        let verifying = &mut records.nonces.verifying(&mut pending);
        match self.verifier().verify(bytes, &arrival, verifying) {
            Ok(verified) if records.nonces.may_have_seen(verified.message.issued_at) => Ok(None),
            Ok(verified) => Ok(Some((verified, pending))),
            Err(RejectError::Replayed { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Refuses a reused id, a quarantined store path or a second deploy,
    /// else records the new deploy (nonce first, then envelope and record)
    /// and makes its events live. A refusal records nothing: its nonce
    /// stays unused.
    fn record_new(
        &self,
        records: &mut Records,
        new: NewDeploy,
        pending: PendingNonce,
        bytes: &[u8],
    ) -> Result<Admission, AdmissionError> {
        let deploy = self.prepare_new(records, new)?;
        records.nonces.commit(pending, now_ms() / 1000)?;
        records.store.insert(deploy.clone(), bytes)?;
        self.open_new(&deploy);
        Ok(Admission::New(accepted(&deploy.record.deploy_id)))
    }

    /// The rules every new deploy passes, whichever door it came in by
    /// (`POST /v1/deploy`, a rollback, a channel): its id never used, its
    /// store path not quarantined (unless `retry_failed`), no deploy
    /// running. Returns the deploy to record; records nothing.
    pub(super) fn prepare_new(
        &self,
        records: &Records,
        new: NewDeploy,
    ) -> Result<StoredDeploy, AdmissionError> {
        if records.store.id_used(new.deploy_id.as_str()) {
            return Err(AdmissionError::DeployIdReused(new.deploy_id));
        }
        // Before `busy`: a retry after the running deploy ends would be
        // refused the same.
        self.check_quarantine(records, &new.store_path, !new.quarantine_applies)?;
        if let Some(running) = records.store.running() {
            return Err(AdmissionError::Busy(running.record.deploy_id.clone()));
        }
        let now = now_ms();
        Ok(StoredDeploy {
            progress: Progress {
                sequence: records.store.next_sequence(),
                rollback_to_generation: new.rollback_to_generation,
                confirm_within_s: new.confirm_within_s,
                specialisation: new.specialisation.clone(),
                expires_at: Some(new.expires_at),
                ..Progress::default()
            },
            record: received_record(new, self.config().hostname.clone(), now),
        })
    }

    /// Makes a deploy just recorded live: its events open (before the
    /// records lock is released, so a subscriber never sees the deploy
    /// without its events), and a line in the journal.
    pub(super) fn open_new(&self, deploy: &StoredDeploy) {
        let record = &deploy.record;
        self.fanout.open(
            &record.deploy_id,
            [DeployEvent::State(StateEvent {
                state: DeployState::Received,
                at_ms: record.created_at_ms,
            })],
        );
        log::info!(
            deploy_id = record.deploy_id.as_str(),
            store_path = record.store_path.as_str(),
            rev = record.rev.as_ref().map_or("", |rev| rev.as_str()),
            key = record.key.as_str();
            "deploy {} received: {} {}",
            record.deploy_id,
            record.action,
            record.store_path
        );
    }
}

/// The record of a deploy just received.
fn received_record(new: NewDeploy, host: deployd_protocol::HostName, now: u64) -> DeployRecord {
    DeployRecord {
        deploy_id: new.deploy_id,
        host,
        store_path: new.store_path,
        action: new.action,
        flake: new.flake,
        rev: new.rev,
        key: new.key,
        issued_at: new.issued_at,
        state: DeployState::Received,
        phases: vec![PhaseRecord {
            state: DeployState::Received,
            started_at_ms: now,
            ended_at_ms: None,
        }],
        error: None,
        previous_system: None,
        reboot_required: false,
        log_tail: Vec::new(),
        created_at_ms: now,
        finished_at_ms: None,
    }
}

/// A message whose nonce was seen: the very same envelope again is a
/// client's retry and answers the deploy it started; anything else is a replay.
fn retry(records: &Records, bytes: &[u8]) -> Result<Admission, AdmissionError> {
    match records.store.find_by_envelope(bytes) {
        Some(existing) => Ok(Admission::Retry(accepted(&existing.record.deploy_id))),
        None => Err(AdmissionError::Replayed),
    }
}

/// The answer to an accepted message.
pub(super) fn accepted(id: &DeployId) -> DeployAccepted {
    DeployAccepted {
        deploy_id: id.clone(),
        status_url: format!("/v1/deploys/{id}"),
    }
}
