//! The daemon's shared state and its rules: who may start a deploy, one
//! deploy at a time, retries answered with the deploy they repeat, and every
//! change of a deploy written to disk before the step it announces is taken,
//! then told to its subscribers, the journal and systemd.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use deployd_protocol::api::{
    DeployAccepted, DeployFailure, DeployRecord, DeployState, PhaseRecord, StateEvent,
};
use deployd_protocol::{
    Action, Arrival, DeployId, Endpoint, RejectError, Request, StorePath, SystemClock, Verified,
    Verifier,
};

use crate::api::ApiError;
use crate::clock::now_ms;
use crate::config::Config;
use crate::events::{DeployEvent, LiveEvents};
use crate::metrics::Counters;
use crate::notify;
use crate::state::{DeployStore, DiskNonceStore, PendingNonce, Progress, StateError, StoredDeploy};
use crate::system::Profile;

/// Log lines kept in a record's `log_tail`.
const LOG_TAIL_LINES: usize = 20;
/// Log lines kept per deploy; later lines are counted, not kept.
const MAX_LOG_LINES: usize = 20_000;

/// The daemon: config, verifier and the state every request and deploy shares.
pub struct Daemon {
    /// The checked config.
    pub config: Config,
    /// Checks every signed message.
    verifier: Verifier,
    /// What `nix-store --version` said at start.
    pub nix_version: Option<String>,
    /// Whether systemd runs this machine (switches then run in transient units).
    pub systemd: bool,
    /// Records, nonces and live events; one lock, held briefly.
    inner: Mutex<Inner>,
    /// Cancelled on SIGTERM: the server, event streams and background tasks stop.
    shutdown: tokio_util::sync::CancellationToken,
    /// Event streams open at once are bounded.
    streams: Arc<tokio::sync::Semaphore>,
    /// Set when the system just activated runs another deployd: the daemon
    /// exits once the deploy is recorded, to be started anew.
    restart_after_deploy: std::sync::atomic::AtomicBool,
    /// Held while a log line is written (outside `inner`'s lock).
    log_writer: Mutex<()>,
    /// Woken when a confirm is taken.
    confirmations: tokio::sync::Notify,
}

/// Event streams served at once.
pub const MAX_EVENT_STREAMS: usize = 64;

struct Inner {
    store: DeployStore,
    nonces: DiskNonceStore,
    /// Events of the deploys running in this process.
    live: HashMap<DeployId, LiveEvents>,
    /// Lines logged per running deploy.
    log_lines: HashMap<DeployId, usize>,
    counters: Counters,
}

impl Daemon {
    /// Loads the state under the config's `state_dir`.
    pub fn open(config: Config, nix_version: Option<String>) -> Result<Arc<Daemon>, StateError> {
        let state_dir = &config.file.state_dir;
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::Io {
            action: "creating",
            path: state_dir.clone(),
            source,
        })?;
        let (store, problems) = DeployStore::load(state_dir, config.file.history_limit)?;
        for problem in problems {
            log::warn!("unreadable state: {problem}");
        }
        let (nonces, problem) = DiskNonceStore::load(state_dir, now_ms() / 1000)?;
        if let Some(problem) = problem {
            log::warn!("unreadable nonces: {problem}");
        }
        let verifier = Verifier::new(
            config.trusted_keys.clone(),
            config.hostname.clone(),
            Box::new(SystemClock),
        );
        let counters = Counters::from_history(store.newest_first().map(|d| &d.record));
        Ok(Arc::new(Daemon {
            verifier,
            nix_version,
            systemd: std::path::Path::new("/run/systemd/system").is_dir(),
            config,
            shutdown: tokio_util::sync::CancellationToken::new(),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
            restart_after_deploy: std::sync::atomic::AtomicBool::new(false),
            log_writer: Mutex::new(()),
            confirmations: tokio::sync::Notify::new(),
            inner: Mutex::new(Inner {
                store,
                nonces,
                live: HashMap::new(),
                log_lines: HashMap::new(),
                counters,
            }),
        }))
    }

    /// Resolves when a confirm is taken after this call (see
    /// [`tokio::sync::Notify::notified`]: enable it, then check, then wait).
    pub fn confirmation_taken(&self) -> tokio::sync::futures::Notified<'_> {
        self.confirmations.notified()
    }

    /// Asks for a restart once the running deploy is recorded.
    pub fn request_restart(&self) {
        self.restart_after_deploy
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a restart was asked for.
    pub fn restart_requested(&self) -> bool {
        self.restart_after_deploy
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The token that stops everything on shutdown.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    /// A permit to serve one event stream, if fewer than the maximum are open.
    pub fn stream_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write
        // is whole), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verifies a message that needs no nonce (a signed read).
    pub fn verify_read(
        &self,
        bytes: &[u8],
        method: &str,
        path: &str,
    ) -> Result<Verified, RejectError> {
        let arrival = Arrival {
            endpoint: Endpoint::Read { method, path },
            active_issued_at: None,
        };
        let mut unused = deployd_protocol::MemoryNonceStore::default();
        self.verifier.verify(bytes, &arrival, &mut unused)
    }

    /// Handles `POST /v1/deploy`: verifies, refuses or records the deploy.
    /// Returns the accepted deploy's id and whether it is new (to be run).
    pub fn accept_deploy(&self, bytes: &[u8]) -> Result<(DeployAccepted, bool), ApiError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some((verified, pending)) = self.admit(inner, bytes, Endpoint::Deploy)? else {
            return retry(inner, bytes);
        };
        let Request::Deploy(request) = verified.message.request else {
            return Err(ApiError::internal(
                "the verifier passed a non-deploy message",
            ));
        };
        let new = NewDeploy {
            deploy_id: request.deploy_id,
            store_path: request.store_path,
            action: request.action,
            flake: request.flake,
            rev: request.rev,
            rollback_to_generation: None,
            confirm_within_s: request.confirm_within_s,
            expires_at: verified.message.expires_at,
        };
        self.record_new(
            inner,
            (new, verified.key, verified.message.issued_at),
            pending,
            bytes,
        )
    }

    /// Handles `POST /v1/rollback`: a new deploy, with the id the message
    /// names, back to the profile's previous generation.
    pub fn accept_rollback(&self, bytes: &[u8]) -> Result<(DeployAccepted, bool), ApiError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some((verified, pending)) = self.admit(inner, bytes, Endpoint::Rollback)? else {
            return retry(inner, bytes);
        };
        let Request::Rollback(reference) = verified.message.request else {
            return Err(ApiError::internal(
                "the verifier passed a non-rollback message",
            ));
        };
        let profile = Profile::new(&self.config.file.activation.system_profile);
        let current = profile.current_generation();
        let previous = profile
            .generations()
            .into_iter()
            .rfind(|generation| Some(generation.number) < current)
            .ok_or_else(|| {
                ApiError::BadRequest("there is no previous generation to roll back to".into())
            })?;
        let store_path: StorePath = previous.system.parse().map_err(|error| {
            ApiError::internal(format!("generation {}: {error}", previous.number))
        })?;
        // The revision it was built from, when a kept deploy says so.
        let built_from = inner.store.newest_first().find(|deploy| {
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
            expires_at: verified.message.expires_at,
        };
        self.record_new(
            inner,
            (new, verified.key, verified.message.issued_at),
            pending,
            bytes,
        )
    }

    /// Handles `POST /v1/deploys/{id}/confirm`: a signed `confirm` of a
    /// deploy that waits for it. A confirm of a deploy already confirmed (a
    /// retry) answers the same; of one not waiting, `bad_request`.
    pub fn confirm(&self, bytes: &[u8], id: &DeployId) -> Result<DeployAccepted, ApiError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(deploy) = inner.store.get(id.as_str()).cloned() else {
            return Err(ApiError::NotFound(id.to_string()));
        };
        let verified = self.admit(inner, bytes, Endpoint::Confirm { deploy_id: id })?;
        if deploy.progress.confirmed {
            return Ok(accepted(id));
        }
        let Some((_, pending)) = verified else {
            return Err(ApiError::Replayed);
        };
        if deploy.record.state != DeployState::AwaitingConfirm {
            return Err(ApiError::BadRequest(format!(
                "deploy {id} is {}, not waiting for confirmation",
                deploy.record.state
            )));
        }
        let window_open = deploy
            .progress
            .confirm_deadline_ms
            .is_some_and(|deadline| now_ms() < deadline);
        if !window_open || deploy.progress.rolling_back.is_some() {
            return Err(ApiError::BadRequest(format!(
                "deploy {id}: its confirmation window has closed"
            )));
        }
        let mut confirmed = deploy;
        confirmed.progress.confirmed = true;
        inner
            .nonces
            .commit(pending, now_ms() / 1000)
            .map_err(ApiError::internal)?;
        inner.store.save(&confirmed).map_err(ApiError::internal)?;
        self.confirmations.notify_waiters();
        log::info!(deploy_id = id.as_str(); "deploy {id} confirmed");
        Ok(accepted(id))
    }

    /// Verifies a message that starts a deploy. `None` when its nonce was
    /// seen: the caller checks for a retry of the very same envelope.
    fn admit(
        &self,
        inner: &mut Inner,
        bytes: &[u8],
        endpoint: Endpoint<'_>,
    ) -> Result<Option<(Verified, PendingNonce)>, ApiError> {
        let arrival = Arrival {
            endpoint,
            active_issued_at: inner.store.active().map(|active| active.issued_at),
        };
        let mut pending = PendingNonce::default();
        match self
            .verifier
            .verify(bytes, &arrival, &mut inner.nonces.verifying(&mut pending))
        {
            Ok(verified) if inner.nonces.may_have_seen(verified.message.issued_at) => Ok(None),
            Ok(verified) => Ok(Some((verified, pending))),
            Err(RejectError::Replayed { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Refuses a reused id or a second deploy, else records the new deploy
    /// (nonce first, then envelope and record) and makes its events live.
    fn record_new(
        &self,
        inner: &mut Inner,
        (new, key, issued_at): (NewDeploy, deployd_protocol::KeyName, u64),
        pending: PendingNonce,
        bytes: &[u8],
    ) -> Result<(DeployAccepted, bool), ApiError> {
        if inner.store.id_used(new.deploy_id.as_str()) {
            return Err(ApiError::DeployIdReused(new.deploy_id));
        }
        if let Some(running) = inner.store.running() {
            return Err(ApiError::Busy(running.record.deploy_id.clone()));
        }
        let now = now_ms();
        let deploy = StoredDeploy {
            record: DeployRecord {
                deploy_id: new.deploy_id.clone(),
                host: self.config.hostname.clone(),
                store_path: new.store_path,
                action: new.action,
                flake: new.flake,
                rev: new.rev,
                key,
                issued_at,
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
            },
            progress: Progress {
                sequence: inner.store.next_sequence(),
                rollback_to_generation: new.rollback_to_generation,
                confirm_within_s: new.confirm_within_s,
                expires_at: Some(new.expires_at),
                ..Progress::default()
            },
        };
        inner
            .nonces
            .commit(pending, now / 1000)
            .map_err(ApiError::internal)?;
        inner
            .store
            .insert(deploy.clone(), bytes)
            .map_err(ApiError::internal)?;
        let mut events = LiveEvents::default();
        events.push(DeployEvent::State(StateEvent {
            state: DeployState::Received,
            at_ms: now,
        }));
        inner.live.insert(new.deploy_id.clone(), events);
        let record = &deploy.record;
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
        Ok((accepted(&new.deploy_id), true))
    }

    /// A copy of a deploy as it stands.
    pub fn deploy(&self, id: &str) -> Option<StoredDeploy> {
        self.lock().store.get(id).cloned()
    }

    /// Records, newest first, at most `limit`.
    pub fn history(&self, limit: usize) -> Vec<DeployRecord> {
        self.lock()
            .store
            .newest_first()
            .take(limit)
            .map(|deploy| deploy.record.clone())
            .collect()
    }

    /// The deploy still running, and the last one that ended.
    pub fn running_and_last(&self) -> (Option<DeployRecord>, Option<DeployRecord>) {
        let inner = self.lock();
        (
            inner.store.running().map(|d| d.record.clone()),
            inner.store.last_finished().map(|d| d.record.clone()),
        )
    }

    /// The deploy that made the active system.
    pub fn current_deploy(&self) -> Option<deployd_protocol::api::DeploySummary> {
        let inner = self.lock();
        let active = inner.store.active()?;
        Some(match inner.store.get(active.deploy_id.as_str()) {
            Some(deploy) => crate::api::summary(&deploy.record),
            None => deployd_protocol::api::DeploySummary {
                deploy_id: active.deploy_id.clone(),
                state: DeployState::Succeeded,
                store_path: active.store_path.clone(),
                rev: active.rev.clone(),
                finished_at_ms: None,
                error: None,
            },
        })
    }

    /// The metrics counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// What a subscriber to `id`'s events gets: the events so far and, while
    /// the deploy runs, a receiver for the rest.
    pub fn subscribe(
        &self,
        id: &str,
    ) -> Option<(
        Vec<crate::events::Positioned>,
        Option<tokio::sync::broadcast::Receiver<crate::events::Positioned>>,
    )> {
        let (record, log_file) = {
            let inner = self.lock();
            let deploy = inner.store.get(id)?;
            if let Some(live) = inner.live.get(&deploy.record.deploy_id) {
                let (history, receiver) = live.subscribe();
                return Some((history, Some(receiver)));
            }
            let log_file = inner.store.log_file(&deploy.record.deploy_id);
            (deploy.record.clone(), log_file)
        };
        // A finished deploy: its log is read outside the lock.
        let lines = std::fs::read_to_string(log_file)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        Some((crate::events::replay(&record, lines), None))
    }

    /// Changes a deploy's progress and writes it down, before the step it
    /// announces is taken.
    pub fn update(
        &self,
        id: &DeployId,
        change: impl FnOnce(&mut StoredDeploy),
    ) -> Result<StoredDeploy, StateError> {
        off_the_runtime(|| {
            let mut inner = self.lock();
            let mut deploy = inner
                .store
                .get(id.as_str())
                .cloned()
                .ok_or_else(|| missing_record(id))?;
            change(&mut deploy);
            inner.store.save(&deploy)?;
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
        self.emit(id, DeployEvent::State(StateEvent { state, at_ms: now }));
        notify::status(&format!("deploy {id}: {state}"));
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
        {
            let mut inner = self.lock();
            inner.counters.count(&record);
            if let Some(mut live) = inner.live.remove(id) {
                live.push(DeployEvent::State(StateEvent { state, at_ms: now }));
                live.push(DeployEvent::Done(Box::new(record.clone())));
            }
            inner.log_lines.remove(id);
        }
        notify::status(&format!("idle; deploy {id} {state}"));
        let reason = failure
            .as_ref()
            .map_or("", |failure| failure.message.as_str());
        match state {
            DeployState::Succeeded => log::info!(deploy_id = id.as_str(); "deploy {id}: succeeded"),
            _ => log::warn!(deploy_id = id.as_str(); "deploy {id}: {state}: {reason}"),
        }
        written.map(|_| record)
    }

    /// Adds a line to a deploy's log: its file, its record's tail, its events.
    /// The file is written outside the daemon's lock (a slow or stuck disk
    /// stalls the deploy's own task, never the API); lines are written one
    /// caller at a time, so the file and the events keep one order.
    pub fn log(&self, id: &DeployId, line: &str) {
        let _one_writer = self
            .log_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (line, path) = {
            let mut inner = self.lock();
            let count = inner.log_lines.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count > MAX_LOG_LINES {
                return;
            }
            // One event is one line of the log file (event cursors count them).
            let line = if *count == MAX_LOG_LINES {
                "deployd: log limit reached; further lines are dropped".to_owned()
            } else {
                line.replace(['\n', '\r'], " ")
            };
            (line, inner.store.log_file(id))
        };
        let appended = off_the_runtime(|| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| writeln!(file, "{line}"))
        });
        if let Err(error) = appended {
            log::warn!("cannot append to {}: {error}", path.display());
        }
        let mut inner = self.lock();
        if let Some(live) = inner.live.get_mut(id) {
            live.push(DeployEvent::Log(line.clone()));
        }
        // The tail reaches disk with the next state change.
        inner.store.push_log_tail(id, line, LOG_TAIL_LINES);
    }

    fn emit(&self, id: &DeployId, event: DeployEvent) {
        if let Some(live) = self.lock().live.get_mut(id) {
            live.push(event);
        }
    }

    /// Makes a deploy found unfinished at start live again, so its events
    /// stream while it is finished.
    pub fn revive(&self, id: &DeployId) {
        let mut inner = self.lock();
        if let Some(deploy) = inner.store.get(id.as_str()) {
            // Its phases and the lines of its log so far: event cursors go
            // on from where the previous daemon's left off.
            let lines = std::fs::read_to_string(inner.store.log_file(id))
                .map(|text| text.lines().map(str::to_owned).collect())
                .unwrap_or_default();
            let mut events = LiveEvents::default();
            for (event, _) in crate::events::replay(&deploy.record, lines) {
                events.push(event);
            }
            inner.live.insert(id.clone(), events);
        }
    }

    /// The deploy still running, if any (at start: one left by a crash).
    pub fn unfinished(&self) -> Option<DeployId> {
        self.lock()
            .store
            .running()
            .map(|d| d.record.deploy_id.clone())
    }

    /// Records the deploy that made the active system.
    pub fn set_active(&self, record: &DeployRecord) -> Result<(), StateError> {
        off_the_runtime(|| self.write_active(record))
    }

    fn write_active(&self, record: &DeployRecord) -> Result<(), StateError> {
        self.lock().store.set_active(crate::state::ActiveDeploy {
            deploy_id: record.deploy_id.clone(),
            issued_at: record.issued_at,
            store_path: record.store_path.clone(),
            rev: record.rev.clone(),
        })
    }

    /// The output, status and pid files of a deploy's `n`th detached switch.
    pub fn switch_files(
        &self,
        id: &DeployId,
        n: u32,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        self.lock().store.switch_files(id, n)
    }
}

/// What a new deploy is, before it is recorded.
struct NewDeploy {
    deploy_id: DeployId,
    store_path: StorePath,
    action: Action,
    flake: Option<String>,
    rev: Option<deployd_protocol::Revision>,
    rollback_to_generation: Option<u64>,
    confirm_within_s: Option<u64>,
    /// The end of its message's validity window (Unix seconds).
    expires_at: u64,
}

/// A message whose nonce was seen: the very same envelope again is a
/// client's retry and answers the deploy it started; anything else is a replay.
fn retry(inner: &Inner, bytes: &[u8]) -> Result<(DeployAccepted, bool), ApiError> {
    match inner.store.find_by_envelope(bytes) {
        Some(existing) => Ok((accepted(&existing.record.deploy_id), false)),
        None => Err(ApiError::Replayed),
    }
}

/// Runs synced file writes from a deploy's task without stalling the
/// requests served on the same runtime thread (on a multi-threaded runtime,
/// the thread hands its other work over while it blocks).
fn off_the_runtime<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn accepted(id: &DeployId) -> DeployAccepted {
    DeployAccepted {
        deploy_id: id.clone(),
        status_url: format!("/v1/deploys/{id}"),
    }
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
