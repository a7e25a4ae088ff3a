//! What a lab is made of, written down the moment its slot is claimed, so
//! that it can always be torn down: by `lab down`, by the `Lab` that made it
//! on drop, or by the next lab when the process that owned it died.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::flake::FleetSettings;
use crate::net::Slot;
use crate::node::Node;

/// Where every lab on this machine is registered.
pub const REGISTRY_DIR: &str = "/run/deployd-lab";

/// A process, identified beyond its pid (pids are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Result<ProcessId> {
        let pid = std::process::id();
        let start_time = start_time(pid).context("reading this process's start time")?;
        Ok(ProcessId { pid, start_time })
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Everything a lab is made of.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabState {
    /// Its slot: bridge name and subnet.
    pub slot: Slot,
    /// Its directory (node roots, cache, flake, keys, logs).
    pub dir: PathBuf,
    /// The builder, serving the binary cache.
    pub builder: Node,
    /// The hosts.
    pub hosts: Vec<Node>,
    /// The process whose death ends the lab; `None` for a lab made by `lab up`.
    pub owner: Option<ProcessId>,
    /// The settings of the toy flake's last commit.
    pub settings: FleetSettings,
}

impl LabState {
    /// All nodes, builder first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.builder).chain(&self.hosts)
    }

    /// The registry entry of this lab.
    pub fn registry_file(&self) -> PathBuf {
        Path::new(REGISTRY_DIR).join(format!("{}.json", self.slot.bridge()))
    }

    /// The state file inside the lab's directory.
    pub fn state_file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    /// Writes the registry entry and the state file.
    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::create_dir_all(REGISTRY_DIR)?;
        for path in [self.registry_file(), LabState::state_file(&self.dir)] {
            write_atomically(&path, &json)?;
        }
        Ok(())
    }

    /// Reads the state file of the lab in `dir`.
    pub fn load(dir: &Path) -> Result<LabState> {
        let path = LabState::state_file(dir);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("no lab in {} (reading {})", dir.display(), path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Every lab registered on this machine.
fn registered_labs() -> Vec<LabState> {
    let Ok(entries) = std::fs::read_dir(REGISTRY_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<LabState>(&bytes).ok())
        .collect()
}

/// The labs registered on this machine whose owner process is gone.
pub fn orphaned_labs() -> Vec<LabState> {
    registered_labs()
        .into_iter()
        .filter(|state| state.owner.is_some_and(|owner| !owner.is_alive()))
        .collect()
}

/// The labs registered on this machine that `owner` owns (a process
/// taking its labs down when it is interrupted).
pub fn labs_owned_by(owner: ProcessId) -> Vec<LabState> {
    registered_labs()
        .into_iter()
        .filter(|state| state.owner == Some(owner))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().expect("own stat");
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }
}
