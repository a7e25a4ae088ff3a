//! Each host's own control groups. A host's systemd runs in a cgroup
//! namespace rooted at a cgroup of its own (`deployd-lab-<netns>`) in each
//! hierarchy systemd uses (the unified cgroup2 one, the named `systemd` one
//! and the cgroup1 `pids` one, where mounted), so that two hosts'
//! `deployd.service` are two cgroups, not one that both systemds would fill,
//! watch, kill and limit: in a shared `pids` cgroup the `TasksMax` of one
//! host's `deployd.service` (1024) held every host's threads, and at 100
//! hosts fetching at once their `nix-store` could not start threads
//! (`Resource temporarily unavailable`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The cgroups a host's systemd is rooted at, one per hierarchy systemd uses.
pub fn host_cgroups(netns: &str) -> Result<Vec<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").context("/proc/self/cgroup")?;
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = filesystem.split_whitespace();
        let (kind, options) = (fields.next(), fields.nth(1).unwrap_or(""));
        let hierarchy = match kind {
            Some("cgroup2") => "",
            Some("cgroup") if options.split(',').any(|o| o == "name=systemd") => "name=systemd",
            // A host's systemd puts its units' `TasksMax` there: shared, the
            // hosts' `deployd.service` would all count against one limit.
            Some("cgroup") if options.split(',').any(|o| o == "pids") => "pids",
            _ => continue,
        };
        let Some(mount_point) = mount.split_whitespace().nth(4) else {
            continue;
        };
        // Where this process is in that hierarchy (`ID:CONTROLLERS:PATH`).
        let Some(path) = own.lines().find_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers == hierarchy).then_some(path)
        }) else {
            continue;
        };
        dirs.push(
            Path::new(mount_point)
                .join(path.trim_start_matches('/'))
                .join(format!("deployd-lab-{netns}")),
        );
    }
    Ok(dirs)
}

/// The CPU time used so far by everything `netns`'s host runs, from its
/// cgroup2's `cpu.stat` (`usage_usec`, which keeps the time of cgroups
/// already removed, such as a transient unit's); or, with `unit` (a path
/// inside the host's tree, `system.slice/deployd.service`), by that unit
/// alone. `None` where there is no such cgroup (no cgroup2 here, the unit
/// does not run).
pub fn host_cpu_time(netns: &str, unit: Option<&str>) -> Result<Option<Duration>> {
    for dir in host_cgroups(netns)? {
        if !dir.join("cpu.stat").exists() {
            // The named `systemd` hierarchy, which counts nothing.
            continue;
        }
        let stat = dir.join(unit.unwrap_or("")).join("cpu.stat");
        let Ok(text) = std::fs::read_to_string(&stat) else {
            return Ok(None);
        };
        let microseconds =
            usage_usec(&text).with_context(|| format!("no usage_usec in {}", stat.display()))?;
        return Ok(Some(Duration::from_micros(microseconds)));
    }
    Ok(None)
}

/// The processes in `unit` (a path inside `netns`'s host's cgroup tree,
/// `system.slice/deployd.service`), as this machine numbers them; none where
/// there is no such cgroup.
pub fn unit_pids(netns: &str, unit: &str) -> Result<Vec<u32>> {
    for dir in host_cgroups(netns)? {
        if !dir.join("cpu.stat").exists() {
            continue;
        }
        let procs = dir.join(unit).join("cgroup.procs");
        let Ok(text) = std::fs::read_to_string(&procs) else {
            return Ok(Vec::new());
        };
        return Ok(text
            .lines()
            .filter_map(|pid| pid.trim().parse().ok())
            .collect());
    }
    Ok(Vec::new())
}

/// `usage_usec` of a `cpu.stat`.
fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|line| {
        let value = line.strip_prefix("usage_usec ")?;
        value.trim().parse().ok()
    })
}

/// Removes a host's cgroups, with every cgroup its systemd made in them,
/// once their processes are gone (they die with the host's PID 1).
pub fn remove_host_cgroups(netns: &str) -> Result<()> {
    for dir in host_cgroups(netns)? {
        if dir.exists() {
            remove_tree(&dir, Instant::now() + Duration::from_secs(10))?;
        }
    }
    Ok(())
}

/// Removes the cgroup `dir` and those under it, deepest first, retrying
/// while processes still leave them.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                bail!("cannot remove cgroup {}: {error}", dir.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_cpu_stat() {
        let stat = "usage_usec 1503\nuser_usec 1000\nsystem_usec 503\nnr_periods 0\n";
        assert_eq!(usage_usec(stat), Some(1503));
        assert_eq!(usage_usec("user_usec 1\n"), None);
    }
}
