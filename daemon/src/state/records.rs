//! Deploy records on disk and in memory, with bounded history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deployd_command::redact::mask_credentials;
use deployd_protocol::api::DeployRecord;
use deployd_protocol::{Action, DeployId, StorePath};

use super::quarantine::QuarantineIndex;
use super::used_ids::{UsedIds, KEPT_DEPLOY_IDS};
use super::{read_json, write_atomically, write_json, StateError};

/// The record's file name inside a deploy's directory.
const RECORD_FILE: &str = "record.json";

/// A deploy as the daemon keeps it: the public record plus what it needs to
/// finish the deploy truthfully after a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredDeploy {
    /// What the API shows.
    pub record: DeployRecord,
    /// Where the work stands.
    pub progress: Progress,
}

/// The steps of a deploy that changed the machine, each written down before
/// it is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Creation order, across restarts.
    pub sequence: u64,
    /// The profile generation before this deploy (to roll back to).
    pub previous_generation: Option<u64>,
    /// Set just before the system profile is changed.
    pub profile_change_started: bool,
    /// The switch of the new system, once launched.
    pub switch: Option<SwitchLaunch>,
    /// The switch back to the previous system, once launched.
    pub rollback_switch: Option<SwitchLaunch>,
    /// For a requested rollback: the generation to return to (the profile
    /// moves back to it instead of gaining a new generation).
    #[serde(default)]
    pub rollback_to_generation: Option<u64>,
    /// Magic rollback: the confirmation window the request asked for.
    #[serde(default)]
    pub confirm_within_s: Option<u64>,
    /// When the confirmation window ends (Unix ms), once it has begun.
    #[serde(default)]
    pub confirm_deadline_ms: Option<u64>,
    /// Whether a signed `confirm` arrived in time.
    #[serde(default)]
    pub confirmed: bool,
    /// Why the deploy rolls back, written (with the state back to
    /// `activating`) before the rollback changes anything, so that a
    /// restarted daemon resumes the rollback whatever step it was in.
    #[serde(default)]
    pub rolling_back: Option<String>,
    /// The error code of that reason (`switch_failed`, `activation_failed`,
    /// ...), which the deploy ends with.
    #[serde(default)]
    pub rolling_back_code: Option<String>,
    /// The end of the request's validity window (Unix seconds): a deploy
    /// not started by then is never started.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// The units systemd listed as failed just before the new system's
    /// switch: their failures are not this deploy's, and the health check
    /// does not count them.
    #[serde(default)]
    pub failed_before: Vec<String>,
    /// The specialisation the request asked for (else the one the host
    /// runs is kept).
    #[serde(default)]
    pub specialisation: Option<String>,
}

/// A `switch-to-configuration` that outlives the daemon, written down before
/// it is started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchLaunch {
    /// The system whose script runs.
    pub system: String,
    /// The action it was given.
    pub action: Action,
    /// Its transient unit, when started through systemd.
    pub unit: Option<String>,
    /// Where its output goes.
    pub log_file: PathBuf,
    /// Where its exit status appears when it ends.
    pub status_file: PathBuf,
    /// Where its wrapper writes its pid as it starts.
    pub pid_file: PathBuf,
    /// The boot it was launched in (the kernel's `boot_id`): after a reboot
    /// its pid names some other process, and it is not running.
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// The deploy that made the active system, for downgrade protection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveDeploy {
    /// Its id.
    pub deploy_id: DeployId,
    /// Its `issued_at`.
    pub issued_at: u64,
    /// Its system.
    pub store_path: StorePath,
    /// The revision it was built from.
    #[serde(default)]
    pub rev: Option<deployd_protocol::Revision>,
}

/// All deploy records: the last `history_limit` finished ones and any
/// running one.
#[derive(Debug)]
pub struct DeployStore {
    dir: PathBuf,
    active_file: PathBuf,
    history_limit: usize,
    by_sequence: BTreeMap<u64, StoredDeploy>,
    active: Option<ActiveDeploy>,
    /// The most recent deploy ids used here, kept well past the history
    /// limit: a reused id is refused (`deploy-ids`).
    used_ids: UsedIds,
    /// The SHA-256 of each kept deploy's envelope, to know a retry.
    envelope_digests: std::collections::HashMap<String, [u8; 32]>,
    /// The store paths whose last deploy ended badly (quarantine), kept as
    /// deploys end: no record is read to answer a request.
    quarantine: QuarantineIndex,
}

/// `deploy` with the credentials of any URL in its error and log tail
/// masked: a record written by an earlier deployd, whose config could still
/// give a cache's password, may hold them. (This deployd masks what it
/// writes as it writes it.)
fn without_credentials(mut deploy: StoredDeploy) -> StoredDeploy {
    let record = &mut deploy.record;
    if let Some(error) = &mut record.error {
        error.message = mask_credentials(&error.message).into_owned();
    }
    for line in &mut record.log_tail {
        *line = mask_credentials(line).into_owned();
    }
    deploy
}

/// The SHA-256 of an envelope's bytes.
fn envelope_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl DeployStore {
    /// Loads `state_dir/deploys/`; unreadable records are moved aside (and
    /// reported in the returned list), never fatal.
    pub fn load(state_dir: &Path, history_limit: usize) -> Result<(Self, Vec<String>), StateError> {
        let dir = state_dir.join("deploys");
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        let mut by_sequence = BTreeMap::new();
        let mut problems = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| StateError::Io {
            action: "listing",
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path().join(RECORD_FILE);
            match read_json::<StoredDeploy>(&path) {
                Ok(Some(deploy)) => {
                    by_sequence.insert(deploy.progress.sequence, without_credentials(deploy));
                }
                Ok(None) => {}
                Err(error) => {
                    let aside = super::move_aside(state_dir, &entry.path());
                    problems.push(format!("{error}; {aside}"));
                }
            }
        }
        let active_file = state_dir.join("active.json");
        let active = match read_json(&active_file) {
            Ok(active) => active,
            Err(error) => {
                // Rebuilt from the records: the newest deploy that succeeded.
                let aside = super::move_aside(state_dir, &active_file);
                let rebuilt = by_sequence
                    .values()
                    .rev()
                    .find(|deploy| {
                        deploy.record.state == deployd_protocol::api::DeployState::Succeeded
                            && deploy.record.action.activates()
                    })
                    .map(|deploy| ActiveDeploy {
                        deploy_id: deploy.record.deploy_id.clone(),
                        issued_at: deploy.record.issued_at,
                        store_path: deploy.record.store_path.clone(),
                        rev: deploy.record.rev.clone(),
                    });
                problems.push(format!(
                    "{error}; {aside}; the active deploy is taken from the records: {}",
                    rebuilt
                        .as_ref()
                        .map_or("none".to_owned(), |active| active.deploy_id.to_string())
                ));
                rebuilt
            }
        };
        // Never fewer ids than the deploys the host still reports.
        let kept_ids = KEPT_DEPLOY_IDS.max(history_limit);
        let mut used_ids = UsedIds::load(&state_dir.join("deploy-ids"), kept_ids)?;
        for deploy in by_sequence.values() {
            used_ids.remember_in_memory(deploy.record.deploy_id.as_str());
        }
        let envelope_digests = by_sequence
            .values()
            .filter_map(|deploy| {
                let id = deploy.record.deploy_id.as_str();
                let bytes = std::fs::read(dir.join(id).join("envelope")).ok()?;
                Some((id.to_owned(), envelope_digest(&bytes)))
            })
            .collect();
        let mut quarantine = QuarantineIndex::default();
        for deploy in by_sequence.values() {
            quarantine.observe(&deploy.record);
        }
        let store = DeployStore {
            dir,
            active_file,
            history_limit,
            by_sequence,
            active,
            used_ids,
            envelope_digests,
            quarantine,
        };
        Ok((store, problems))
    }

    /// The next creation sequence number.
    pub fn next_sequence(&self) -> u64 {
        self.by_sequence
            .keys()
            .next_back()
            .map_or(1, |last| last + 1)
    }

    /// Adds a new deploy: its directory, its envelope, then its record; then
    /// drops the oldest finished deploys beyond the history limit.
    pub fn insert(&mut self, deploy: StoredDeploy, envelope: &[u8]) -> Result<(), StateError> {
        self.used_ids.remember(deploy.record.deploy_id.as_str())?;
        let dir = self.deploy_dir(&deploy.record.deploy_id);
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        write_atomically(&self.envelope_file(&deploy.record.deploy_id), envelope)?;
        self.save(&deploy)?;
        self.envelope_digests.insert(
            deploy.record.deploy_id.to_string(),
            envelope_digest(envelope),
        );
        self.by_sequence.insert(deploy.progress.sequence, deploy);
        self.prune();
        Ok(())
    }

    /// Writes a deploy's record (before the step it announces is taken).
    ///
    /// Memory takes the change even when the disk refuses it, so a deploy
    /// that ends while its record cannot be written still ends here (and
    /// the host is not `busy` for ever).
    pub fn save(&mut self, deploy: &StoredDeploy) -> Result<(), StateError> {
        self.quarantine.observe(&deploy.record);
        self.by_sequence
            .insert(deploy.progress.sequence, deploy.clone());
        write_json(&self.record_file(&deploy.record.deploy_id), deploy)
    }

    /// Adds a line to a deploy's log tail, in memory (it is written with the
    /// record's next save), keeping the last `limit` lines.
    pub fn push_log_tail(&mut self, id: &DeployId, line: String, limit: usize) {
        let deploy = self
            .by_sequence
            .values_mut()
            .find(|deploy| &deploy.record.deploy_id == id);
        if let Some(deploy) = deploy {
            let tail = &mut deploy.record.log_tail;
            tail.push(line);
            if tail.len() > limit {
                tail.remove(0);
            }
        }
    }

    fn prune(&mut self) {
        let finished: Vec<u64> = self
            .by_sequence
            .iter()
            .filter(|(_, deploy)| deploy.record.state.is_final())
            .map(|(sequence, _)| *sequence)
            .collect();
        let excess = finished.len().saturating_sub(self.history_limit);
        for sequence in finished.into_iter().take(excess) {
            if let Some(deploy) = self.by_sequence.remove(&sequence) {
                self.envelope_digests
                    .remove(deploy.record.deploy_id.as_str());
                let _ = std::fs::remove_dir_all(self.deploy_dir(&deploy.record.deploy_id));
            }
        }
    }

    /// Whether a deploy with this id was recorded here (among the most
    /// recent [`KEPT_DEPLOY_IDS`] ids).
    pub fn id_used(&self, id: &str) -> bool {
        self.used_ids.contains(id)
    }

    /// The deploy with this id.
    pub fn get(&self, id: &str) -> Option<&StoredDeploy> {
        self.by_sequence
            .values()
            .find(|deploy| deploy.record.deploy_id.as_str() == id)
    }

    /// The deploy that came in these exact envelope bytes, if any.
    pub fn find_by_envelope(&self, bytes: &[u8]) -> Option<&StoredDeploy> {
        // Digests kept in memory: no file is read for a retry.
        let digest = envelope_digest(bytes);
        self.by_sequence.values().rev().find(|deploy| {
            self.envelope_digests
                .get(deploy.record.deploy_id.as_str())
                .is_some_and(|kept| *kept == digest)
        })
    }

    /// Records, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &StoredDeploy> {
        self.by_sequence.values().rev()
    }

    /// The deploy still running, if any.
    pub fn running(&self) -> Option<&StoredDeploy> {
        self.by_sequence
            .values()
            .find(|deploy| !deploy.record.state.is_final())
    }

    /// The last deploy that ended.
    pub fn last_finished(&self) -> Option<&StoredDeploy> {
        self.newest_first()
            .find(|deploy| deploy.record.state.is_final())
    }

    /// The store paths whose last deploy here ended `failed` or
    /// `rolled_back`, for the quarantine check and status.
    pub fn quarantine(&self) -> &QuarantineIndex {
        &self.quarantine
    }

    /// The deploy that made the active system.
    pub fn active(&self) -> Option<&ActiveDeploy> {
        self.active.as_ref()
    }

    /// Records the deploy that made the active system.
    pub fn set_active(&mut self, active: ActiveDeploy) -> Result<(), StateError> {
        write_json(&self.active_file, &active)?;
        self.active = Some(active);
        Ok(())
    }

    /// A deploy's directory: everything of one deploy, removed together.
    pub fn deploy_dir(&self, id: &DeployId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// A deploy's record file.
    pub fn record_file(&self, id: &DeployId) -> PathBuf {
        self.deploy_dir(id).join(RECORD_FILE)
    }

    /// A deploy's envelope file.
    pub fn envelope_file(&self, id: &DeployId) -> PathBuf {
        self.deploy_dir(id).join("envelope")
    }

    /// A deploy's full log.
    pub fn log_file(&self, id: &DeployId) -> PathBuf {
        self.deploy_dir(id).join("log")
    }

    /// The output, status and pid files of a deploy's detached switch.
    pub fn switch_files(&self, id: &DeployId, kind: super::SwitchKind) -> super::SwitchFiles {
        let dir = self.deploy_dir(id);
        let n = kind.number();
        super::SwitchFiles {
            log_file: dir.join(format!("switch-{n}.log")),
            status_file: dir.join(format!("switch-{n}.status")),
            pid_file: dir.join(format!("switch-{n}.pid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployd_protocol::api::{DeployRecord, DeployState};

    fn deploy(sequence: u64, state: DeployState) -> StoredDeploy {
        StoredDeploy {
            record: DeployRecord {
                deploy_id: format!("d{sequence}").parse().expect("id"),
                host: "h".parse().expect("host"),
                store_path: "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
                    .parse()
                    .expect("path"),
                action: Action::Switch,
                flake: None,
                rev: None,
                key: "k".parse().expect("key"),
                issued_at: 0,
                state,
                phases: Vec::new(),
                error: None,
                previous_system: None,
                reboot_required: false,
                log_tail: Vec::new(),
                created_at_ms: 0,
                finished_at_ms: None,
            },
            progress: Progress {
                sequence,
                ..Progress::default()
            },
        }
    }

    #[test]
    fn credentials_an_earlier_deployd_wrote_are_masked_when_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _) = DeployStore::load(dir.path(), 3).expect("load");
        let mut earlier = deploy(1, DeployState::Failed);
        let leaked = "`nix-store --option substituters http://alice:s3cret@cache` failed";
        earlier.record.error = Some(deployd_protocol::api::DeployFailure {
            code: "fetch_failed".into(),
            message: leaked.into(),
        });
        earlier.record.log_tail = vec!["unable to download 'http://alice:s3cret@cache/x'".into()];
        store.insert(earlier, b"{}").expect("insert");
        let (store, problems) = DeployStore::load(dir.path(), 3).expect("reload");
        assert!(problems.is_empty(), "{problems:?}");
        let record = &store.get("d1").expect("kept").record;
        assert_eq!(
            record.error.as_ref().expect("error").message,
            "`nix-store --option substituters http://alice:***@cache` failed"
        );
        assert_eq!(
            record.log_tail,
            ["unable to download 'http://alice:***@cache/x'"]
        );
    }

    #[test]
    fn the_quarantine_is_rebuilt_from_the_records_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _) = DeployStore::load(dir.path(), 3).expect("load");
        let mut rolled_back = deploy(1, DeployState::RolledBack);
        rolled_back.record.finished_at_ms = Some(1_000);
        store.insert(rolled_back.clone(), b"{}").expect("insert");
        let path = &rolled_back.record.store_path;
        assert!(store.quarantine().find(path, 2_000, 60).is_some());
        let (store, _) = DeployStore::load(dir.path(), 3).expect("reload");
        let quarantined = store.quarantine().find(path, 2_000, 60).expect("kept");
        assert_eq!(quarantined.deploy_id.as_str(), "d1");
    }

    #[test]
    fn history_is_bounded_and_survives_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _) = DeployStore::load(dir.path(), 3).expect("load");
        for sequence in 1..=5 {
            store
                .insert(deploy(sequence, DeployState::Succeeded), b"{}")
                .expect("insert");
        }
        store
            .insert(deploy(6, DeployState::Fetching), b"{}")
            .expect("insert");
        let kept: Vec<String> = store
            .newest_first()
            .map(|d| d.record.deploy_id.to_string())
            .collect();
        assert_eq!(kept, ["d6", "d5", "d4", "d3"]);
        assert!(store.id_used("d1"), "a pruned deploy's id stays used");
        assert!(!store.deploy_dir(&"d1".parse().expect("id")).exists());
        assert!(!store.envelope_file(&"d2".parse().expect("id")).exists());
        assert!(store.envelope_file(&"d3".parse().expect("id")).exists());

        let (reloaded, problems) = DeployStore::load(dir.path(), 3).expect("reload");
        assert!(problems.is_empty());
        assert_eq!(
            reloaded
                .running()
                .map(|d| d.record.deploy_id.to_string())
                .as_deref(),
            Some("d6")
        );
        assert_eq!(reloaded.next_sequence(), 7);
        assert!(reloaded.id_used("d1") && reloaded.id_used("d6") && !reloaded.id_used("d7"));
    }

    #[test]
    fn an_unreadable_record_is_moved_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("deploys/broken")).expect("dir");
        std::fs::write(dir.path().join("deploys/broken/record.json"), "{").expect("write");
        let (store, problems) = DeployStore::load(dir.path(), 3).expect("load");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(store.newest_first().next().is_none());
        assert!(dir.path().join("unreadable/broken/record.json").exists());
    }

    #[test]
    fn used_ids_are_bounded_oldest_forgotten_first() {
        const BOUND: usize = KEPT_DEPLOY_IDS;
        let dir = tempfile::tempdir().expect("temp dir");
        // Three times the bound, as years of deploys would leave it.
        let old: String = (0..3 * BOUND).map(|n| format!("old-{n}\n")).collect();
        std::fs::write(dir.path().join("deploy-ids"), old).expect("write");
        let (mut store, _) = DeployStore::load(dir.path(), 3).expect("load");
        store
            .insert(deploy(1, DeployState::Succeeded), b"{}")
            .expect("insert");
        let text = std::fs::read_to_string(dir.path().join("deploy-ids")).expect("read");
        assert!(
            text.lines().count() <= 2 * BOUND,
            "{} lines",
            text.lines().count()
        );
        assert_eq!(text.lines().last(), Some("d1"));
        assert!(store.id_used("d1") && store.id_used(&format!("old-{}", 3 * BOUND - 1)));
        assert!(!store.id_used("old-0"), "the oldest id is still kept");
        let (reloaded, _) = DeployStore::load(dir.path(), 3).expect("reload");
        assert!(reloaded.id_used("d1") && !reloaded.id_used("old-0"));
    }

    #[test]
    fn a_torn_last_id_does_not_join_the_next_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("deploy-ids"), "d1\nd2-cut-sh").expect("write");
        let (mut store, _) = DeployStore::load(dir.path(), 3).expect("load");
        assert!(store.id_used("d1"));
        assert!(!store.id_used("d2-cut-sh"));
        store
            .insert(deploy(3, DeployState::Succeeded), b"{}")
            .expect("insert");
        let text = std::fs::read_to_string(dir.path().join("deploy-ids")).expect("read");
        assert_eq!(text, "d1\nd3\n");
        let (reloaded, _) = DeployStore::load(dir.path(), 3).expect("reload");
        assert!(reloaded.id_used("d3") && reloaded.id_used("d1"));
    }
}
