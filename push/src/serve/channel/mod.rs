//! push serve's channel (docs/src/design/channels.md): per host of
//! push.toml, the newest signed desired state, byte for byte as published,
//! and the newest report the host signed with its pinned host key. Both are
//! kept under `state_dir/channel/` (`hosts/<host>.json`,
//! `reports/<host>.json`, each written whole: temporary file, fsync,
//! rename), so they survive a restart; in memory each host has a watch that
//! wakes the long polls waiting for a newer state and the rollout waiting
//! for a report.
//!
//! The HTTP side is [`routes`]; publishing for a followed branch's pull
//! hosts and turning their reports into commit statuses is [`publish`].

mod polls;
pub mod publish;
#[cfg(test)]
mod router_tests;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::{Context, Result};
use deployd_protocol::{
    DeployId, Envelope, HostName, HostReport, KeyName, Permission, Permissions, PublicKey,
    SignatureValue, TrustedKey, TrustedKeys, MAX_ENVELOPE_BYTES,
};
use tokio::sync::watch;

use super::hook_body::{BodyLimits, BodyReader};
use super::queue::write_atomically;
use crate::inventory::Inventory;
pub use polls::{PollGate, PollRefusal};

/// A desired state held for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The envelope, as published.
    pub bytes: Arc<[u8]>,
    /// What its payload says (verified when it was published).
    pub summary: HeldSummary,
    /// Whether push serve's own key signed it (a followed branch's
    /// rollout, rather than `push publish` with a publisher's key).
    pub signed_by_service: bool,
}

/// The fields of a held state shown in the status and used to match reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct HeldSummary {
    /// Its place in the channel.
    pub sequence: u64,
    /// The deploy it starts.
    pub deploy_id: Option<String>,
    /// The revision it was built from.
    #[serde(default)]
    pub rev: Option<String>,
    /// The system.
    pub store_path: Option<String>,
    /// Valid from (Unix seconds).
    pub issued_at: u64,
    /// Valid until (Unix seconds).
    pub expires_at: u64,
}

/// A host's newest report, verified when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReport {
    /// The report.
    pub report: HostReport,
    /// The envelope as received (kept on disk).
    pub bytes: Arc<[u8]>,
}

/// A host of push.toml as the channel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// `pull = true`: push serve publishes for it instead of calling it.
    pub pull: bool,
    /// The key its reports must be signed with.
    pub host_key: Option<PublicKey>,
}

/// One host's channel: what it holds and who waits for it.
struct Slot {
    /// The state held; long polls wait on it.
    held: watch::Sender<Option<Held>>,
    /// The newest report; a rollout waiting for the host's result watches it.
    report: watch::Sender<Option<Arc<KeptReport>>>,
    /// Deploys a rollout is waiting for (their final report is its to
    /// post on the commit, not the report handler's).
    awaited: BTreeSet<DeployId>,
}

impl Slot {
    fn new(held: Option<Held>, report: Option<Arc<KeptReport>>) -> Slot {
        Slot {
            held: watch::Sender::new(held),
            report: watch::Sender::new(report),
            awaited: BTreeSet::new(),
        }
    }
}

/// The channel's store and its waiters.
pub struct Channel {
    /// `state_dir/channel`.
    dir: PathBuf,
    /// Each host's slot (hosts of push.toml, or found on disk).
    slots: Mutex<BTreeMap<HostName, Slot>>,
    /// The hosts of the push.toml last read (`None` before any was).
    fleet: RwLock<Option<Arc<BTreeMap<HostName, FleetHost>>>>,
    /// Who may publish: push serve's key and `[channel] publishers`, each
    /// with `deploy`.
    publishers: TrustedKeys,
    /// push serve's own key.
    own_key: PublicKey,
    /// One publish at a time: the sequence checked is the one replaced.
    publishing: tokio::sync::Mutex<()>,
    /// Bounds the long polls held.
    pub polls: PollGate,
    /// Reads the bodies of publishes and reports, each at most an
    /// envelope's size.
    pub bodies: BodyReader,
}

impl Channel {
    /// Opens the channel under `state_dir`: what it held before a restart is
    /// read back. `own_key` is push serve's deploy key; `publishers` the
    /// other keys that may publish.
    pub fn open(state_dir: &Path, own_key: PublicKey, publishers: &[PublicKey]) -> Result<Channel> {
        let dir = state_dir.join("channel");
        for sub in ["hosts", "reports"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let deploy = Permissions::NONE.with(Permission::Deploy);
        let keys = std::iter::once(own_key.clone())
            .chain(publishers.iter().cloned())
            .map(|key| TrustedKey { key, may: deploy });
        let publishers = TrustedKeys::new(keys).context(
            "[channel] publishers: each key needs a name of its own, and not push serve's key's",
        )?;
        let mut slots = BTreeMap::new();
        for host in read_hosts_in(&dir.join("hosts"))? {
            let held = read_held(&dir, &host, &own_key)?;
            let report = read_report(&dir, &host)?;
            slots.insert(host, Slot::new(held, report.map(Arc::new)));
        }
        for host in read_hosts_in(&dir.join("reports"))? {
            if let std::collections::btree_map::Entry::Vacant(entry) = slots.entry(host) {
                let report = read_report(&dir, entry.key())?;
                entry.insert(Slot::new(None, report.map(Arc::new)));
            }
        }
        Ok(Channel {
            dir,
            slots: Mutex::new(slots),
            fleet: RwLock::new(None),
            publishers,
            own_key,
            publishing: tokio::sync::Mutex::new(()),
            polls: PollGate::default(),
            bodies: BodyReader::new(BodyLimits {
                max_bytes: MAX_ENVELOPE_BYTES,
                ..BodyLimits::default()
            }),
        })
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<HostName, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the hosts of `inventory` (push.toml as last fetched).
    pub fn set_fleet(&self, inventory: &Inventory) {
        let hosts = inventory
            .hosts
            .iter()
            .map(|(name, entry)| {
                let host = FleetHost {
                    pull: entry.pull,
                    host_key: entry.host_key.clone(),
                };
                (name.clone(), host)
            })
            .collect();
        *self
            .fleet
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(hosts));
    }

    /// The hosts of push.toml, if it was read.
    pub fn fleet(&self) -> Option<Arc<BTreeMap<HostName, FleetHost>>> {
        self.fleet
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Who may publish.
    pub fn publishers(&self) -> &TrustedKeys {
        &self.publishers
    }

    /// Whether `key` (the key a verification reports as the signer) is
    /// push serve's own.
    pub fn is_own_key(&self, key: &KeyName) -> bool {
        key == self.own_key.name()
    }

    /// The state held for `host`.
    pub fn held(&self, host: &HostName) -> Option<Held> {
        self.slots()
            .get(host)
            .and_then(|slot| slot.held.borrow().clone())
    }

    /// The newest report of `host`.
    pub fn report(&self, host: &HostName) -> Option<Arc<KeptReport>> {
        self.slots()
            .get(host)
            .and_then(|slot| slot.report.borrow().clone())
    }

    /// Watches the state held for `host`.
    pub fn watch_held(&self, host: &HostName) -> watch::Receiver<Option<Held>> {
        self.slots()
            .entry(host.clone())
            .or_insert_with(|| Slot::new(None, None))
            .held
            .subscribe()
    }

    /// Watches the reports of `host`.
    pub fn watch_reports(&self, host: &HostName) -> watch::Receiver<Option<Arc<KeptReport>>> {
        self.slots()
            .entry(host.clone())
            .or_insert_with(|| Slot::new(None, None))
            .report
            .subscribe()
    }

    /// Writes `bytes` (verified, with `summary`) as the state held for
    /// `host`, durably, then wakes its long polls. `signed_by_service` is
    /// whether the verified signer is push serve's own key (never a
    /// signature's key id: anyone can write one). The caller holds
    /// [`Channel::lock_publishing`] from reading the sequence it replaces.
    pub async fn hold(
        &self,
        host: &HostName,
        bytes: Vec<u8>,
        summary: HeldSummary,
        signed_by_service: bool,
    ) -> Result<()> {
        let path = self.dir.join("hosts").join(format!("{host}.json"));
        let bytes: Arc<[u8]> = bytes.into();
        let written = bytes.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &written))
            .await?
            .with_context(|| format!("cannot write the desired state of {host}"))?;
        let held = Held {
            bytes,
            summary,
            signed_by_service,
        };
        self.slots()
            .entry(host.clone())
            .or_insert_with(|| Slot::new(None, None))
            .held
            .send_replace(Some(held));
        Ok(())
    }

    /// One publish at a time: held while the sequence is read, checked and
    /// replaced.
    pub async fn lock_publishing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.publishing.lock().await
    }

    /// Keeps `report` (verified) as the newest of `host`, durably, unless a
    /// newer one is kept (`Ok(false)`). Returns whether a rollout awaits
    /// its deploy (then the rollout reports it on the commit).
    pub async fn keep_report(
        &self,
        host: &HostName,
        report: HostReport,
        bytes: Vec<u8>,
    ) -> Result<Kept> {
        let _one_at_a_time = self.publishing.lock().await;
        if let Some(kept) = self.report(host) {
            if *kept.bytes == *bytes {
                return Ok(Kept::Same);
            }
            if kept.report.sent_at > report.sent_at {
                return Ok(Kept::Older {
                    kept_sent_at: kept.report.sent_at,
                });
            }
        }
        let path = self.dir.join("reports").join(format!("{host}.json"));
        let bytes: Arc<[u8]> = bytes.into();
        let written = bytes.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &written))
            .await?
            .with_context(|| format!("cannot write the report of {host}"))?;
        let deploy_id = report.record.deploy_id.clone();
        let kept = Arc::new(KeptReport { report, bytes });
        let mut slots = self.slots();
        let slot = slots
            .entry(host.clone())
            .or_insert_with(|| Slot::new(None, None));
        slot.report.send_replace(Some(kept));
        Ok(Kept::Newest {
            awaited: slot.awaited.contains(&deploy_id),
        })
    }

    /// A rollout waits for the report of `deploy_id` on `host`.
    pub fn await_report(&self, host: &HostName, deploy_id: &DeployId) {
        self.slots()
            .entry(host.clone())
            .or_insert_with(|| Slot::new(None, None))
            .awaited
            .insert(deploy_id.clone());
    }

    /// The rollout stops waiting for `deploy_id`'s report: the newest
    /// report, read under the same lock, so that a report arriving now is
    /// either seen here or posted by its handler.
    pub fn stop_awaiting(&self, host: &HostName, deploy_id: &DeployId) -> Option<Arc<KeptReport>> {
        let mut slots = self.slots();
        let slot = slots.get_mut(host)?;
        slot.awaited.remove(deploy_id);
        let report = slot.report.borrow().clone();
        report
    }

    /// Every host the channel holds something for, or that pulls.
    pub fn hosts(&self) -> Vec<HostName> {
        let mut hosts: BTreeSet<HostName> = self.slots().keys().cloned().collect();
        if let Some(fleet) = self.fleet() {
            hosts.extend(
                fleet
                    .iter()
                    .filter(|(_, host)| host.pull)
                    .map(|(name, _)| name.clone()),
            );
        }
        hosts.into_iter().collect()
    }
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// It is the newest; whether a rollout awaits its deploy.
    Newest {
        /// A rollout waits for this deploy's result.
        awaited: bool,
    },
    /// The very report kept (a host sending it again).
    Same,
    /// A report sent later is kept.
    Older {
        /// When the kept one was sent.
        kept_sent_at: u64,
    },
}

/// What a desired state's payload says, read from its envelope (verified
/// before it was held).
pub fn summarize(bytes: &[u8]) -> Result<HeldSummary> {
    let envelope = Envelope::parse(bytes).context("not an envelope")?;
    serde_json::from_slice(envelope.payload()).context("not a desired state")
}

/// Whether `key` signed the envelope `bytes`: its signature under `key`'s
/// id verifies (a key id alone proves nothing; a publisher may add an entry
/// with any id).
fn signed_by(bytes: &[u8], key: &PublicKey) -> bool {
    let Ok(envelope) = Envelope::parse(bytes) else {
        return false;
    };
    let pae = envelope.pre_authentication_encoding();
    envelope.signatures().iter().any(|signature| {
        signature.keyid == key.name().as_str()
            && matches!(&signature.sig, SignatureValue::Ed25519(sig)
                if key.verifying_key().verify_strict(&pae, sig).is_ok())
    })
}

/// The hosts with a `<host>.json` in `dir`.
fn read_hosts_in(dir: &Path) -> Result<Vec<HostName>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut hosts = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(host) = name.to_str().and_then(|name| name.strip_suffix(".json")) else {
            continue;
        };
        if let Ok(host) = host.parse() {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

fn read_held(dir: &Path, host: &HostName, own_key: &PublicKey) -> Result<Option<Held>> {
    let path = dir.join("hosts").join(format!("{host}.json"));
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let summary = summarize(&bytes).with_context(|| format!("{}", path.display()))?;
    Ok(Some(Held {
        signed_by_service: signed_by(&bytes, own_key),
        bytes: bytes.into(),
        summary,
    }))
}

fn read_report(dir: &Path, host: &HostName) -> Result<Option<KeptReport>> {
    let path = dir.join("reports").join(format!("{host}.json"));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    // Verified when it arrived; read back as kept.
    let envelope = Envelope::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    let report: HostReport = serde_json::from_slice(envelope.payload())
        .with_context(|| format!("{} is not a report", path.display()))?;
    Ok(Some(KeptReport {
        report,
        bytes: bytes.into(),
    }))
}
