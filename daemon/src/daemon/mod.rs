//! The daemon's shared state, in parts that each keep their own lock:
//! the records and nonces ([`Records`], behind the one lock every admission
//! and progress write takes), the live events ([`fanout`]), the deploy log's
//! writer ([`deploy_log`]), the metrics counters, and the process-wide
//! signals ([`lifecycle`]). No file is read or written under a lock but the
//! records' own synced writes. Lock order: records, then fanout; every other
//! lock is taken alone.
//!
//! What happens under those locks lives beside this file: who may start a
//! deploy ([`admission`]), how a deploy moves on and ends ([`progress`]).

pub mod admission;
mod deploy_log;
pub mod desired;
mod fanout;
pub mod lifecycle;
mod progress;
mod quarantine;
pub mod reload;

pub use crate::environment::Environment;
pub use admission::{Admission, AdmissionError};
pub use desired::{Channel, Desired, DesiredAdmission};
pub use lifecycle::MAX_EVENT_STREAMS;
pub use quarantine::Quarantined;

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use deployd_protocol::api::{DeployRecord, DeployState, DeploySummary};
use deployd_protocol::{
    Arrival, DeployId, Endpoint, MemoryNonceStore, RejectError, SecretKey, SystemClock, Verified,
    Verifier,
};
use deployd_service::tls::{ReloadingCertificate, TlsFilesError};
use tokio::sync::broadcast;

use crate::clock::now_ms;
use crate::config::Config;
use crate::events::Positioned;
use crate::metrics::Counters;
use crate::state::{
    ActiveDeploy, DeployStore, DiskNonceStore, StateError, StoredDeploy, SwitchFiles, SwitchKind,
};
use deploy_log::DeployLog;
use fanout::Fanout;
use lifecycle::Lifecycle;

/// The daemon: config, verifier and the state every request and deploy shares.
pub struct Daemon {
    /// The checked config, replaced whole when it is reloaded (SIGHUP): a
    /// deploy or request holds the one it started with.
    config: RwLock<Arc<Config>>,
    /// What `nix-store --version` said at start.
    pub nix_version: Option<String>,
    /// Whether systemd runs this machine (switches then run in transient units).
    pub systemd: bool,
    /// Checks every signed message; made anew from a reloaded config.
    verifier: RwLock<Arc<Verifier>>,
    /// Records and nonces: admission and progress writes take this lock.
    records: Mutex<Records>,
    /// The live events of running deploys.
    fanout: Fanout,
    /// The deploy log's writer and line counts.
    deploy_log: DeployLog,
    /// The metrics counters.
    counters: Mutex<Counters>,
    /// Shutdown, restart, confirmations, stream permits.
    pub lifecycle: Lifecycle,
    /// The API's certificate when the config has `[tls]` (HTTPS only),
    /// loaded when the daemon opens; it follows its files, and a reload
    /// points it at the config's (whether TLS is on stays as it started).
    tls: Option<Arc<ReloadingCertificate>>,
    /// The key this host signs its reports to channels with.
    host_key: SecretKey,
}

/// Why the daemon cannot open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state cannot be read.
    #[error("cannot open the state")]
    State(#[from] StateError),
    /// The `[tls]` certificate and key cannot be used.
    #[error("[tls]")]
    Tls(#[from] TlsFilesError),
    /// The host key can be neither read nor made.
    #[error("the host key")]
    HostKey(#[from] crate::host_key::HostKeyError),
}

/// What admission and progress change together.
struct Records {
    /// Every kept deploy, the active one, the ids used.
    store: DeployStore,
    /// The nonces seen, until they expire.
    nonces: DiskNonceStore,
}

impl Daemon {
    /// Loads the `[tls]` certificate, if any, and the state under the
    /// config's `state_dir`.
    pub fn open(config: Config, environment: Environment) -> Result<Arc<Daemon>, OpenError> {
        let tls = match &config.file.tls {
            Some(tls) => Some(Arc::new(ReloadingCertificate::load(tls.files())?)),
            None => None,
        };
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
        let host_key = crate::host_key::load_or_make(state_dir, &config.hostname)?;
        let verifier = verifier_for(&config);
        let counters = Counters::from_history(store.newest_first().map(|d| &d.record));
        Ok(Arc::new(Daemon {
            verifier: RwLock::new(Arc::new(verifier)),
            nix_version: environment.nix_version,
            systemd: environment.systemd,
            config: RwLock::new(Arc::new(config)),
            records: Mutex::new(Records { store, nonces }),
            fanout: Fanout::default(),
            deploy_log: DeployLog::default(),
            counters: Mutex::new(counters),
            lifecycle: Lifecycle::default(),
            tls,
            host_key,
        }))
    }

    /// The key this host signs its reports with.
    pub fn host_key(&self) -> &SecretKey {
        &self.host_key
    }

    /// The API's certificate, when it is served over HTTPS.
    pub fn tls(&self) -> Option<Arc<ReloadingCertificate>> {
        self.tls.clone()
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The verifier of the config in force now.
    fn verifier(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `config` in force, with a verifier of its trusted keys.
    fn replace_config(&self, config: Config) {
        let verifier = Arc::new(verifier_for(&config));
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
        *self
            .verifier
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = verifier;
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock leaves consistent data (every write
        // is whole), so a poisoned lock is still usable.
        self.records
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
        self.verifier()
            .verify(bytes, &arrival, &mut MemoryNonceStore::default())
    }

    /// A copy of a deploy as it stands.
    pub fn deploy(&self, id: &str) -> Option<StoredDeploy> {
        self.records().store.get(id).cloned()
    }

    /// Records, newest first, at most `limit`.
    pub fn history(&self, limit: usize) -> Vec<DeployRecord> {
        self.records()
            .store
            .newest_first()
            .take(limit)
            .map(|deploy| deploy.record.clone())
            .collect()
    }

    /// The deploy still running, and the last one that ended.
    pub fn running_and_last(&self) -> (Option<DeployRecord>, Option<DeployRecord>) {
        let records = self.records();
        (
            records.store.running().map(|d| d.record.clone()),
            records.store.last_finished().map(|d| d.record.clone()),
        )
    }

    /// The deploy that made the active system.
    pub fn current_deploy(&self) -> Option<DeploySummary> {
        let records = self.records();
        let active = records.store.active()?;
        Some(match records.store.get(active.deploy_id.as_str()) {
            Some(deploy) => DeploySummary::from(&deploy.record),
            None => DeploySummary {
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
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Counts a request answered with the error `code` (for `/metrics`).
    pub fn count_refusal(&self, code: deployd_protocol::ErrorCode) {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .refuse(code);
    }

    /// Counts a poll of a channel that ended in `result` (for `/metrics`).
    pub fn count_poll(&self, result: &'static str) {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .poll(result);
    }

    fn count(&self, record: &DeployRecord) {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .count(record);
    }

    /// What a subscriber to `id`'s events gets: the events so far and, while
    /// the deploy runs, a receiver for the rest.
    pub fn subscribe(
        &self,
        id: &str,
    ) -> Option<(Vec<Positioned>, Option<broadcast::Receiver<Positioned>>)> {
        let (record, log_file) = {
            let records = self.records();
            let deploy = records.store.get(id)?;
            if let Some((history, receiver)) = self.fanout.subscribe(&deploy.record.deploy_id) {
                return Some((history, Some(receiver)));
            }
            let log_file = records.store.log_file(&deploy.record.deploy_id);
            (deploy.record.clone(), log_file)
        };
        // A finished deploy: its log is read outside the lock.
        let lines = progress::read_log_lines(&log_file);
        Some((crate::events::replay(&record, lines), None))
    }

    /// The deploy still running, if any (at start: one left by a crash).
    pub fn unfinished(&self) -> Option<DeployId> {
        self.records()
            .store
            .running()
            .map(|d| d.record.deploy_id.clone())
    }

    /// Records the deploy that made the active system.
    pub fn set_active(&self, record: &DeployRecord) -> Result<(), StateError> {
        let active = ActiveDeploy {
            deploy_id: record.deploy_id.clone(),
            issued_at: record.issued_at,
            store_path: record.store_path.clone(),
            rev: record.rev.clone(),
        };
        off_the_runtime(|| self.records().store.set_active(active))
    }

    /// The files of a deploy's forward or rollback switch.
    pub fn switch_files(&self, id: &DeployId, kind: SwitchKind) -> SwitchFiles {
        self.records().store.switch_files(id, kind)
    }
}

/// A verifier trusting `config`'s keys, for its host.
fn verifier_for(config: &Config) -> Verifier {
    Verifier::new(
        config.trusted_keys.clone(),
        config.hostname.clone(),
        Box::new(SystemClock),
    )
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
