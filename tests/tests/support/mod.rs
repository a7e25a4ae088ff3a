//! What every lab test needs: root, and options for a lab owned by the test.

#![allow(dead_code)]

pub mod deployd;
pub mod forge;
pub mod push;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deployd_lab::{is_root, LabOptions};

/// Options for a lab of `hosts` hosts that lives as long as the test process.
/// Fails the test (never skips it) when not run as root.
pub fn lab_options(hosts: usize) -> LabOptions {
    assert!(
        is_root(),
        "lab tests need root (network namespaces, mounts); CI runs them as root"
    );
    LabOptions {
        hosts,
        dir: None,
        lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_lab")),
        owned_by_this_process: true,
        systemd: true,
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// The pids of processes whose command line mentions `dir`.
pub fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().expect("utf-8").as_bytes();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|window| window == needle)
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}
