//! The deployd lab: a fleet of toy NixOS hosts on one machine, with real Nix.
//!
//! A [`Lab`] has a builder whose signed binary cache is served over HTTP, and
//! hosts, each in its own network namespace on a private bridge (inside
//! 198.18.0.0/16) with its own `/nix` store and database, system profile,
//! `nix.conf` trusting only the builder's cache key, `/run` and `/var/lib`.
//! A [`ToyFlake`] in a real git repository describes one toy NixOS system per
//! host. Everything a lab makes is registered as it is made and removed by
//! [`Lab::down`], on drop, or by the next lab if its owner died.
//!
//! The end-to-end tests use this library; the `lab` binary drives it by hand.

pub mod browser;
pub mod cgroups;
pub mod channel_receiver;
mod deployd;
mod flake;
pub mod forge;
pub mod http;
mod https_cache;
mod inspect;
mod installer;
mod lab;
pub mod net;
mod node;
pub mod push_serve;
pub mod reference;
mod registry;
pub mod run;
pub mod s3;
mod ssh;
pub mod ssh_agent;
pub mod supervise;
mod systemd_host;
pub mod tls;

pub use deployd::{
    sibling_binary, TrustedDeployKey, DEPLOYD_CONFIG, DEPLOYD_PORT, DEPLOYD_STATE_DIR,
};
pub use flake::{
    foreign_platform, nix_system, BulkPaths, FleetSettings, SystemDeployd, TargetUnit, ToyFlake,
    UnitRuns,
};
pub use https_cache::CACHE_HTTPS_PORT;
pub use inspect::{
    SwitchRecord, FAIL_SWITCH_FLAG, RESTART_LIST, START_LIST, SWITCH_DELAY_FILE, SWITCH_LOCK,
    SWITCH_LOG, SYSTEM_PROFILE,
};
pub use installer::NewMachine;
pub use lab::{
    host_name, nix_version, teardown, wait_for_port, Lab, LabOptions, CACHE_PORT, MAX_HOSTS,
};
pub use node::{Node, BOUND_DIRS};
pub use registry::{labs_owned_by, orphaned_labs, LabState, ProcessId, REGISTRY_DIR};
pub use ssh::SshAccess;
pub use systemd_host::{deployd_unit, ModuleUnit};

/// Whether this process runs as root, which labs need (namespaces, mounts).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
