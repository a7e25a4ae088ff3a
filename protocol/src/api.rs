//! The daemon's HTTP answers, shared by the daemon that writes them and the
//! `push` that reads them: deploy records, states, status and events.

use crate::kinds::Action;
use crate::names::{DeployId, HostName, KeyName, Revision};
use crate::store_path::StorePath;

/// Where a deploy stands. `received` → `fetching` → `activating` →
/// (`awaiting_confirm`) → (`checking_health`) → `succeeded`, or `failed`, or
/// `rolled_back`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Verified and recorded; nothing done yet.
    Received,
    /// Realising the closure from the trusted caches.
    Fetching,
    /// Setting the profile and running `switch-to-configuration`.
    Activating,
    /// Activated; waiting for the sender's `confirm`.
    AwaitingConfirm,
    /// Activated; running the health checks.
    CheckingHealth,
    /// The new system is active (or was already).
    Succeeded,
    /// Nothing changed, or the switch failed with nothing to roll back to.
    Failed,
    /// The switch or a check failed and the previous generation is active again.
    RolledBack,
}

impl DeployState {
    /// Whether the deploy has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeployState::Succeeded | DeployState::Failed | DeployState::RolledBack
        )
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Received => "received",
            DeployState::Fetching => "fetching",
            DeployState::Activating => "activating",
            DeployState::AwaitingConfirm => "awaiting_confirm",
            DeployState::CheckingHealth => "checking_health",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One phase a deploy went through, with its times (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhaseRecord {
    /// The state the deploy was in.
    pub state: DeployState,
    /// When it entered that state.
    pub started_at_ms: u64,
    /// When it left it; `None` while it is the current state.
    pub ended_at_ms: Option<u64>,
}

/// Why a deploy did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployFailure {
    /// A stable code: a [`FailureCode`](crate::FailureCode)'s name
    /// (`fetch_failed`, `switch_failed`, ...), kept as a string so that a
    /// client reads codes newer than itself.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// A deploy's record (`GET /v1/deploys/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployRecord {
    /// The sender's id for it.
    pub deploy_id: DeployId,
    /// The host it ran on.
    pub host: HostName,
    /// The system it activates.
    pub store_path: StorePath,
    /// How.
    pub action: Action,
    /// The flake it was built from, as the sender said.
    pub flake: Option<String>,
    /// The revision it was built from, as the sender said.
    pub rev: Option<Revision>,
    /// The key that authorised it.
    pub key: KeyName,
    /// The signed request's `issued_at` (downgrade protection compares it).
    pub issued_at: u64,
    /// Where it stands.
    pub state: DeployState,
    /// The phases so far.
    pub phases: Vec<PhaseRecord>,
    /// Why it failed or rolled back.
    pub error: Option<DeployFailure>,
    /// The system that was active before.
    pub previous_system: Option<String>,
    /// Whether the new system needs a reboot (kernel, initrd or modules changed).
    pub reboot_required: bool,
    /// The last lines of its log.
    pub log_tail: Vec<String>,
    /// When it was received (Unix milliseconds).
    pub created_at_ms: u64,
    /// When it ended (Unix milliseconds).
    pub finished_at_ms: Option<u64>,
}

/// The answer to an accepted `POST /v1/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployAccepted {
    /// The deploy's id.
    pub deploy_id: DeployId,
    /// Where its record is (`/v1/deploys/{id}`).
    pub status_url: String,
}

/// A deploy in a status answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploySummary {
    /// Its id.
    pub deploy_id: DeployId,
    /// Where it stands.
    pub state: DeployState,
    /// Its system.
    pub store_path: StorePath,
    /// Its revision.
    pub rev: Option<Revision>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Why it failed or rolled back, when it did.
    pub error: Option<String>,
}

impl From<&DeployRecord> for DeploySummary {
    fn from(record: &DeployRecord) -> Self {
        DeploySummary {
            deploy_id: record.deploy_id.clone(),
            state: record.state,
            store_path: record.store_path.clone(),
            rev: record.rev.clone(),
            finished_at_ms: record.finished_at_ms,
            error: record
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.code, error.message)),
        }
    }
}

/// One generation of the system profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    /// Its number (`system-N-link`).
    pub number: u64,
    /// The system it points to.
    pub system: String,
    /// Whether the profile points to it now.
    pub current: bool,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusResponse {
    /// The host's name.
    pub hostname: HostName,
    /// `/run/current-system`.
    pub current_system: Option<String>,
    /// `/run/booted-system`.
    pub booted_system: Option<String>,
    /// The system profile's generations, oldest first.
    pub generations: Vec<Generation>,
    /// The deploy that made the active system (its `rev` is what the host runs).
    pub current_deploy: Option<DeploySummary>,
    /// The deploy running now.
    pub active_deploy: Option<DeploySummary>,
    /// The last deploy that ended.
    pub last_deploy: Option<DeploySummary>,
    /// Whether the current system needs a reboot to be fully active.
    pub reboot_required: bool,
    /// deployd's version.
    pub daemon_version: String,
    /// What `nix-store --version` says.
    pub nix_version: Option<String>,
    /// The binary caches the host fetches from, in its order (a password in
    /// a URL is not shown). Senders check that a system is there before
    /// they send it.
    #[serde(default)]
    pub substituters: Vec<String>,
    /// The cache keys the host trusts (public, `NAME:base64`).
    #[serde(default)]
    pub trusted_public_keys: Vec<String>,
    /// The store paths this host refuses to deploy (`quarantined`) unless
    /// a request says `retry_failed`, newest first. Absent from the answers
    /// of daemons older than quarantine, and then read as none.
    #[serde(default)]
    pub quarantined: Vec<QuarantinedPath>,
    /// The host's own key (public, `NAME:base64`), which signs the reports
    /// it sends to a channel; the operator pins it in push.toml as
    /// `host_key`. Absent from the answers of daemons older than channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// A store path whose last deploy here ended `failed` or `rolled_back`
/// within the host's `quarantine_s`: deploying it again needs
/// `retry_failed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuarantinedPath {
    /// The system.
    pub store_path: StorePath,
    /// The deploy that ended so.
    pub deploy_id: DeployId,
    /// How it ended: `failed` or `rolled_back`.
    pub state: DeployState,
    /// When it ended (Unix milliseconds).
    pub ended_at_ms: u64,
    /// When the quarantine ends (Unix milliseconds).
    pub until_ms: u64,
}

/// The data of an `event: state` in a deploy's event stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateEvent {
    /// The state entered.
    pub state: DeployState,
    /// When (Unix milliseconds).
    pub at_ms: u64,
}

/// The data of an `event: log` in a deploy's event stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEvent {
    /// One line of the deploy's log.
    pub line: String,
}

/// Event names of the stream: `state`, `log`, and `done` (whose data is the
/// final [`DeployRecord`]; the stream ends after it).
pub mod event_names {
    /// A state change ([`super::StateEvent`]).
    pub const STATE: &str = "state";
    /// A log line ([`super::LogEvent`]).
    pub const LOG: &str = "log";
    /// The final record; the last event.
    pub const DONE: &str = "done";
}
