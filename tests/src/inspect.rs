//! Reading a node's state from outside, and the toy switch's controls
//! (make it fail, make it slow).

use std::path::Path;

use anyhow::{Context, Result};

use deployd_protocol::api::DeployRecord;

use crate::deployd::DEPLOYD_STATE_DIR;
use crate::node::Node;

/// The system profile, as NixOS names it.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";
/// Where the toy `switch-to-configuration` records its runs.
pub const SWITCH_LOG: &str = "/var/lib/lab/switch.log";
/// When this file exists on a host, the activation of every toy system
/// fails there (and the switch, going on as NixOS's does, exits 2).
pub const FAIL_SWITCH_FLAG: &str = "/var/lib/lab/fail-switch";
/// When this file exists on a host, its toy switch first sleeps that many seconds.
pub const SWITCH_DELAY_FILE: &str = "/var/lib/lab/switch-delay";
/// While this file exists on a host, its toy switch waits.
pub const SWITCH_GATE_FILE: &str = "/var/lib/lab/switch-gate";
/// The lock every `switch-to-configuration` takes, without waiting, for its
/// whole run (NixOS's, which the toy switch takes as well).
pub const SWITCH_LOCK: &str = "/run/nixos/switch-to-configuration.lock";
/// The units a switch still has to start; an interrupted switch leaves it,
/// and the next one starts them too.
pub const START_LIST: &str = "/run/nixos/start-list";
/// The units a switch still has to restart, kept as [`START_LIST`] is.
pub const RESTART_LIST: &str = "/run/nixos/restart-list";

/// One run of a toy `switch-to-configuration` that got past the pre-switch
/// checks (a `check`, or a run they refused, is not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRecord {
    /// The action it was run with.
    pub action: String,
    /// The system it belonged to.
    pub system: String,
}

impl Node {
    /// Every recorded run of `switch-to-configuration` on this node, oldest
    /// first (see [`SwitchRecord`]).
    pub fn switch_log(&self) -> Result<Vec<SwitchRecord>> {
        let path = self.outside(SWITCH_LOG);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(action, system)| SwitchRecord {
                action: action.to_owned(),
                system: system.to_owned(),
            })
            .collect())
    }

    /// Every deploy record deployd keeps on this node, read from its state
    /// directory (`deploys/*/record.json`), oldest first; none while it has
    /// none. Read from outside, as for a host nobody can reach.
    pub fn deploy_records(&self) -> Result<Vec<DeployRecord>> {
        let dir = self.outside(DEPLOYD_STATE_DIR).join("deploys");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join("record.json");
            // A deploy being created has no record yet.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let stored: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: DeployRecord = serde_json::from_value(stored["record"].clone())
                .with_context(|| format!("a deploy record in {}", path.display()))?;
            records.push(record);
        }
        records.sort_by_key(|record| record.created_at_ms);
        Ok(records)
    }

    /// What `/run/current-system` points to, if anything.
    pub fn current_system(&self) -> Option<String> {
        read_link(&self.outside("/run/current-system"))
    }

    /// The system profile's current generation link (`system-2-link`).
    pub fn profile_generation(&self) -> Option<String> {
        read_link(&self.outside(SYSTEM_PROFILE))
    }

    /// The system the profile's current generation points to.
    pub fn profile_system(&self) -> Option<String> {
        let generation = self.profile_generation()?;
        read_link(&self.outside(&format!("/nix/var/nix/profiles/{generation}")))
    }

    /// Makes the next toy switches' activation on this host fail (or
    /// succeed again); see [`FAIL_SWITCH_FLAG`].
    pub fn set_switch_failure(&self, fail: bool) -> Result<()> {
        let flag = self.outside(FAIL_SWITCH_FLAG);
        if fail {
            std::fs::create_dir_all(flag.parent().context("flag has a parent")?)?;
            std::fs::write(&flag, "")?;
        } else if flag.exists() {
            std::fs::remove_file(&flag)?;
        }
        Ok(())
    }

    /// Closes (`true`) or opens the gate toy switches wait at on this host.
    pub fn set_switch_gate(&self, closed: bool) -> Result<()> {
        let file = self.outside(SWITCH_GATE_FILE);
        if closed {
            std::fs::create_dir_all(file.parent().context("file has a parent")?)?;
            std::fs::write(&file, "")?;
        } else if file.exists() {
            std::fs::remove_file(&file)?;
        }
        Ok(())
    }

    /// Makes the next toy switches on this host take `seconds` longer (0: none).
    pub fn set_switch_delay(&self, seconds: u32) -> Result<()> {
        let file = self.outside(SWITCH_DELAY_FILE);
        if seconds == 0 {
            if file.exists() {
                std::fs::remove_file(&file)?;
            }
            return Ok(());
        }
        std::fs::create_dir_all(file.parent().context("file has a parent")?)?;
        std::fs::write(&file, seconds.to_string())?;
        Ok(())
    }
}

fn read_link(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|target| target.to_string_lossy().into_owned())
}
