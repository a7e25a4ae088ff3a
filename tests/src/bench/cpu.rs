//! CPU time, read before and after each timed deploy, by part:
//!
//! - **machine**: every CPU's busy time (`/proc/stat`: user, nice, system,
//!   irq, softirq, steal), whatever ran it, this benchmark or anything else;
//! - **operator**: what this process ran and waited for (`/proc/self/stat`:
//!   `cutime` + `cstime`, the children's rusage), so push with the `nix` it
//!   runs, or `nix-copy-closure` and `ssh`, or the limit's commands (entered
//!   into the hosts' namespaces but children of this process all the same);
//! - **hosts**: everything each host's systemd runs (its cgroup2 `cpu.stat`),
//!   deployd with its fetch, its switch's transient unit, sshd's sessions,
//!   journald; of which **deployd**, `deployd.service` alone (with the
//!   commands it runs: its fetch, `nix-env`, `systemctl`, `systemd-run`;
//!   **daemon**, the deployd process's own time, is read apart from them),
//!   **pid1**, the hosts' systemd itself (`init.scope`: it starts the
//!   switch's transient unit and answers every `systemctl`), **journald**
//!   (`systemd-journald.service`), and the other units, what is left
//!   (deployd's switch in its transient unit, D-Bus, sshd's sessions);
//! - **cache**: the builder's cache server (`/proc/PID/stat` of its process).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use deployd_lab::cgroups::{host_cpu_time, unit_pids};
use deployd_lab::Lab;

/// deployd's unit inside a host's cgroup tree.
const DEPLOYD_CGROUP: &str = "system.slice/deployd.service";
/// The host's systemd itself (PID 1) inside its cgroup tree.
const PID1_CGROUP: &str = "init.scope";
/// The host's journald inside its cgroup tree.
const JOURNALD_CGROUP: &str = "system.slice/systemd-journald.service";

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    at: Instant,
    machine: Duration,
    operator: Duration,
    hosts: Duration,
    deployd: Duration,
    daemon: Duration,
    pid1: Duration,
    journald: Duration,
    cache: Duration,
}

/// What one timed deploy cost: wall time and CPU time by part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// From start to every host switched.
    pub wall: Duration,
    /// Every CPU of the machine.
    pub machine: Duration,
    /// This process's children (push, `nix-copy-closure`, the limit's commands).
    pub operator: Duration,
    /// Everything the hosts' systemds run.
    pub hosts: Duration,
    /// `deployd.service` on every host (part of `hosts`).
    pub deployd: Duration,
    /// The deployd processes' own time, without the commands they ran
    /// (part of `deployd`).
    pub daemon: Duration,
    /// The hosts' systemd itself, PID 1 (part of `hosts`).
    pub pid1: Duration,
    /// The hosts' journald (part of `hosts`).
    pub journald: Duration,
    /// The cache server.
    pub cache: Duration,
}

impl Usage {
    /// The parts measured, all together: what the deploy itself cost, less
    /// noisy than the machine's total on a machine that does other work.
    pub fn parts(&self) -> Duration {
        self.operator + self.hosts + self.cache
    }

    /// What the machine spent beyond the parts measured: other programs on
    /// this machine, the kernel's work for no process, this benchmark itself.
    pub fn rest(&self) -> Duration {
        self.machine.saturating_sub(self.parts())
    }

    /// The hosts' units beyond deployd.service, PID 1 and journald: the
    /// switch's transient unit, D-Bus, sshd's sessions.
    pub fn other_units(&self) -> Duration {
        self.hosts
            .saturating_sub(self.deployd + self.pid1 + self.journald)
    }
}

/// Reads the counters.
pub struct CpuMeter {
    /// Clock ticks per second (`USER_HZ`), the unit of `/proc`'s times.
    ticks_per_second: u64,
}

impl CpuMeter {
    /// A meter for this machine.
    pub fn new() -> CpuMeter {
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .unwrap_or(100);
        CpuMeter { ticks_per_second }
    }

    /// The counters now.
    pub fn read(&self, lab: &Lab) -> Result<Counters> {
        let ticks =
            |count: u64| Duration::from_nanos(count * 1_000_000_000 / self.ticks_per_second);
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let machine = ticks(machine_busy_ticks(&stat).context("no cpu line in /proc/stat")?);
        let own = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        let operator = ticks(children_ticks(&own).context("unreadable /proc/self/stat")?);
        let (mut hosts, mut deployd) = (Duration::ZERO, Duration::ZERO);
        let (mut pid1, mut journald) = (Duration::ZERO, Duration::ZERO);
        let mut daemon = 0;
        for host in lab.hosts() {
            let unit = |cgroup| host_cpu_time(&host.netns, Some(cgroup));
            hosts += host_cpu_time(&host.netns, None)?.unwrap_or_default();
            deployd += unit(DEPLOYD_CGROUP)?.unwrap_or_default();
            pid1 += unit(PID1_CGROUP)?.unwrap_or_default();
            journald += unit(JOURNALD_CGROUP)?.unwrap_or_default();
            // A command deployd runs ends within the deploy: what is still
            // in the unit when the deploy ended is deployd itself.
            for pid in unit_pids(&host.netns, DEPLOYD_CGROUP)? {
                daemon += std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| own_ticks(&stat))
                    .unwrap_or(0);
            }
        }
        let cache = lab
            .supervised_pid(lab.builder(), "cache-server")
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|stat| own_ticks(&stat))
            .map(ticks)
            .unwrap_or_default();
        Ok(Counters {
            at: Instant::now(),
            machine,
            operator,
            hosts,
            deployd,
            daemon: ticks(daemon),
            pid1,
            journald,
            cache,
        })
    }
}

impl Counters {
    /// What was used from `self` to `later`.
    pub fn until(&self, later: &Counters) -> Usage {
        Usage {
            wall: later.at.duration_since(self.at),
            machine: later.machine.saturating_sub(self.machine),
            operator: later.operator.saturating_sub(self.operator),
            hosts: later.hosts.saturating_sub(self.hosts),
            deployd: later.deployd.saturating_sub(self.deployd),
            daemon: later.daemon.saturating_sub(self.daemon),
            pid1: later.pid1.saturating_sub(self.pid1),
            journald: later.journald.saturating_sub(self.journald),
            cache: later.cache.saturating_sub(self.cache),
        }
    }
}

/// Busy ticks of all CPUs, from the `cpu` line of `/proc/stat`: user, nice,
/// system, irq, softirq and steal (guest time is already in user).
fn machine_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7];
    Some(busy.iter().filter_map(|&index| fields.get(index)).sum())
}

/// The fields of a `/proc/PID/stat` after the command name (field 3 on).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// `utime` + `stime` (fields 14 and 15) of a `/proc/PID/stat`: the process's
/// own time, all its threads.
fn own_ticks(stat: &str) -> Option<u64> {
    let fields = stat_fields(stat)?;
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `cutime` + `cstime` (fields 16 and 17): its waited-for children's time.
fn children_ticks(stat: &str) -> Option<u64> {
    let fields = stat_fields(stat)?;
    Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 5 20 9000 300 1 2 3 0 0\ncpu0 50 2 10 4500 150 0 1 1 0 0\n";
        assert_eq!(machine_busy_ticks(stat), Some(100 + 5 + 20 + 1 + 2 + 3));
    }

    #[test]
    fn process_times_are_read_past_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 4 31 9 20 0 1 0 5 0 0";
        assert_eq!(own_ticks(stat), Some(17 + 4));
        assert_eq!(children_ticks(stat), Some(31 + 9));
    }
}
