//! A rollout's batches and its failure budget (`--canary`, `--batch`,
//! `--max-failures`, and the same keys in push serve's `[[follow]]`).
//!
//! The canary hosts (a count, taken first in push.toml's order, or names)
//! go first, as their own batch; then the other hosts in push.toml's order,
//! in batches of a count or of a percentage of the selected hosts (rounded
//! up, at least one). A batch starts when the one before has ended. Once
//! more hosts have failed than the budget allows (0 when a canary or a
//! batch size is given), no further host is started. Without a canary or a
//! batch size, every host is one batch and no failure stops anything.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use deployd_protocol::HostName;

/// `--canary`: how many hosts, or which, go first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canary {
    /// The first N hosts, in push.toml's order.
    Count(usize),
    /// These hosts (each must be selected).
    Names(Vec<HostName>),
}

impl FromStr for Canary {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let written = written.trim();
        if let Ok(count) = written.parse::<usize>() {
            if count == 0 {
                return Err("the canary must be at least 1 host".into());
            }
            return Ok(Canary::Count(count));
        }
        let names = written
            .split(',')
            .map(|name| name.trim().parse::<HostName>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                format!("{written:?} is neither a count nor comma-separated host names: {error}")
            })?;
        Ok(Canary::Names(names))
    }
}

/// `--batch`: a count of hosts, or a percentage of the selected hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// N hosts.
    Count(usize),
    /// P% of the selected hosts, rounded up, at least one.
    Percent(usize),
}

impl FromStr for BatchSize {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let written = written.trim();
        let (number, percent) = match written.strip_suffix('%') {
            Some(number) => (number, true),
            None => (written, false),
        };
        let Ok(number) = number.trim().parse::<usize>() else {
            return Err(format!(
                "{written:?} is not a batch size: give a count (2) or a percentage (25%)"
            ));
        };
        match (number, percent) {
            (0, _) => Err("a batch must hold at least 1 host (or 1%)".into()),
            (101.., true) => Err(format!("a batch of {number}% is more than 100%")),
            (_, true) => Ok(BatchSize::Percent(number)),
            (_, false) => Ok(BatchSize::Count(number)),
        }
    }
}

impl BatchSize {
    /// How many hosts a batch holds when `selected` hosts are selected.
    pub fn hosts(self, selected: usize) -> usize {
        match self {
            BatchSize::Count(count) => count,
            BatchSize::Percent(percent) => (selected * percent).div_ceil(100).max(1),
        }
    }
}

/// How a rollout is staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The canary hosts.
    pub canary: Option<Canary>,
    /// The size of each batch after the canary.
    pub batch: Option<BatchSize>,
    /// How many hosts may fail before no further host is started.
    pub max_failures: Option<usize>,
    /// How the budget is spelled where it was given (`--max-failures`,
    /// `max_failures`), for the reason a host was not started.
    pub budget_name: &'static str,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            canary: None,
            batch: None,
            max_failures: None,
            budget_name: "--max-failures",
        }
    }
}

/// Which batch a host is in: the canary, or a numbered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchName {
    /// The canary hosts, first.
    Canary,
    /// The Nth batch after the canary, from 1.
    Number(usize),
}

impl fmt::Display for BatchName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchName::Canary => formatter.write_str("canary"),
            BatchName::Number(number) => write!(formatter, "{number}"),
        }
    }
}

/// Hosts started together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Which one.
    pub name: BatchName,
    /// Its hosts, in push.toml's order.
    pub hosts: Vec<HostName>,
}

impl Policy {
    /// Whether hosts go in batches, gated on the ones before.
    pub fn is_staged(&self) -> bool {
        self.canary.is_some() || self.batch.is_some()
    }

    /// How many failures are let through (none: any number).
    pub fn budget(&self) -> Option<usize> {
        self.max_failures.or(self.is_staged().then_some(0))
    }

    /// What is wrong with the policy itself, before any host is known.
    pub fn check(&self) -> Result<()> {
        if self.max_failures.is_some() && !self.is_staged() {
            bail!("a failure budget needs a canary or a batch size: without them every host starts at once");
        }
        Ok(())
    }

    /// The batches of `hosts` (the selected hosts, in push.toml's order).
    pub fn plan(&self, hosts: &[HostName]) -> Result<Vec<Batch>> {
        self.check()?;
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let canaries: Vec<HostName> = match &self.canary {
            None => Vec::new(),
            Some(Canary::Count(count)) => {
                if *count >= hosts.len() {
                    bail!(
                        "a canary of {count} leaves no host after it: {} hosts are selected",
                        hosts.len()
                    );
                }
                hosts[..*count].to_vec()
            }
            Some(Canary::Names(names)) => {
                let mut chosen = Vec::new();
                for name in names {
                    if !hosts.contains(name) {
                        bail!("the canary {name} is not one of the selected hosts");
                    }
                    if !chosen.contains(name) {
                        chosen.push(name.clone());
                    }
                }
                if chosen.len() >= hosts.len() {
                    bail!("the canary names every selected host: no host is left after it");
                }
                // push.toml's order, whatever order they were named in.
                hosts
                    .iter()
                    .filter(|host| chosen.contains(host))
                    .cloned()
                    .collect()
            }
        };
        let rest: Vec<HostName> = hosts
            .iter()
            .filter(|host| !canaries.contains(host))
            .cloned()
            .collect();
        let size = self
            .batch
            .map_or(rest.len(), |batch| batch.hosts(hosts.len()));
        let mut batches = Vec::new();
        if !canaries.is_empty() {
            batches.push(Batch {
                name: BatchName::Canary,
                hosts: canaries,
            });
        }
        for (index, chunk) in rest.chunks(size.max(1)).enumerate() {
            batches.push(Batch {
                name: BatchName::Number(index + 1),
                hosts: chunk.to_vec(),
            });
        }
        Ok(batches)
    }
}

/// The failures of a rollout so far, against its budget.
#[derive(Debug)]
pub struct Budget {
    allowed: Option<usize>,
    name: &'static str,
    /// The hosts that failed, each with whether it was a canary.
    failed: Vec<(HostName, bool)>,
}

impl Budget {
    /// The budget of `policy`.
    pub fn new(policy: &Policy) -> Budget {
        Budget {
            allowed: policy.budget(),
            name: policy.budget_name,
            failed: Vec::new(),
        }
    }

    /// `host` (of batch `batch`) did not succeed.
    pub fn failed(&mut self, host: &HostName, batch: BatchName) {
        self.failed.push((host.clone(), batch == BatchName::Canary));
    }

    /// Why no further host may start, once more hosts failed than allowed:
    /// "after canary ankarana failed", "after ankarana and isalo failed:
    /// more than --max-failures 1".
    pub fn stop(&self) -> Option<String> {
        let allowed = self.allowed?;
        if self.failed.len() <= allowed {
            return None;
        }
        let canary = if self.failed.iter().all(|(_, canary)| *canary) {
            "canary "
        } else {
            ""
        };
        let names: Vec<&str> = self.failed.iter().map(|(host, _)| host.as_str()).collect();
        let budget = match allowed {
            0 => String::new(),
            allowed => format!(": more than {} {allowed}", self.name),
        };
        Some(format!("after {canary}{} failed{budget}", listed(&names)))
    }
}

/// "a", "a and b", "a, b and c", "a, b, c and 4 more".
pub fn listed(names: &[&str]) -> String {
    const SHOWN: usize = 3;
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        _ if names.len() > SHOWN + 1 => format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        ),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
#[path = "batches_tests.rs"]
mod tests;
