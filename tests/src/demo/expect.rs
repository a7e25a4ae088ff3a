//! What the demo expects of each push, checked three ways: push's exit
//! status, its summary table, and what `push status --json` says each host
//! runs afterwards. A mismatch is an error that says what happened instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use deployd_lab::Lab;
use deployd_protocol::api::{DeployState, StatusResponse};

/// One run of push: its exit code and, per host, the RESULT column of its
/// summary (none when push stopped before deploying, as when a build fails).
pub struct PushRun {
    code: Option<i32>,
    results: BTreeMap<String, String>,
}

impl PushRun {
    /// Runs push with `args`; its progress goes to the terminal as it comes,
    /// its summary (stdout) is echoed and kept.
    pub fn run(lab: &Lab, key_file: &Path, state: &Path, args: &[&str]) -> Result<PushRun> {
        PushRun::run_with_env(lab, (key_file, state), args, &[])
    }

    /// Like [`PushRun::run`], with extra environment variables.
    pub fn run_with_env(
        lab: &Lab,
        operator: (&Path, &Path),
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<PushRun> {
        let (key_file, state) = operator;
        let output = lab
            .push_command(key_file, state)?
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .context("running push")?;
        std::io::stdout().write_all(&output.stdout)?;
        let summary = String::from_utf8_lossy(&output.stdout);
        Ok(PushRun {
            code: output.status.code(),
            results: summary_results(&summary),
        })
    }

    /// What push did, in words.
    fn describe(&self) -> String {
        let code = self
            .code
            .map_or("was killed by a signal".to_owned(), |code| {
                format!("exited {code}")
            });
        if self.results.is_empty() {
            return format!(
                "push {code} before deploying anything (no summary; its error is above)"
            );
        }
        let hosts: Vec<String> = self
            .results
            .iter()
            .map(|(host, result)| format!("{host} {result}"))
            .collect();
        format!("push {code}: {}", hosts.join(", "))
    }
}

/// The summary's rows: host → RESULT, from the table under its
/// `HOST REV RESULT` header.
fn summary_results(summary: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in summary.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.starts_with(&["HOST", "REV", "RESULT"]) {
            in_table = true;
            continue;
        }
        match columns.as_slice() {
            [host, _rev, result, ..] if in_table && !host.ends_with(':') => {
                rows.insert((*host).to_owned(), (*result).to_owned());
            }
            _ => in_table = false,
        }
    }
    rows
}

/// One host's planned outcome.
struct HostPlan {
    /// Its RESULT in push's summary and its last deploy's state.
    result: DeployState,
    /// The revision it runs afterwards.
    runs: String,
}

/// A push's planned outcome.
pub struct Expected {
    code: i32,
    hosts: BTreeMap<String, HostPlan>,
}

impl Expected {
    /// Every host succeeds and runs `rev`; push exits 0.
    pub fn every_host_succeeds(hosts: &[String], rev: &str) -> Expected {
        let plans = hosts.iter().map(|host| {
            let plan = HostPlan {
                result: DeployState::Succeeded,
                runs: rev.to_owned(),
            };
            (host.clone(), plan)
        });
        Expected {
            code: 0,
            hosts: plans.collect(),
        }
    }

    /// `failing` rolls back and still runs `before`; every other host
    /// succeeds and runs `after`; push exits 1.
    pub fn one_host_rolls_back(hosts: &[String], failing: &str, revs: (&str, &str)) -> Expected {
        let (before, after) = revs;
        let plans = hosts.iter().map(|host| {
            let plan = if host == failing {
                HostPlan {
                    result: DeployState::RolledBack,
                    runs: before.to_owned(),
                }
            } else {
                HostPlan {
                    result: DeployState::Succeeded,
                    runs: after.to_owned(),
                }
            };
            (host.clone(), plan)
        });
        Expected {
            code: 1,
            hosts: plans.collect(),
        }
    }

    /// Checks `pushed`, then every host's status, against the plan.
    pub fn check(&self, pushed: &PushRun, lab: &Lab, key_file: &Path, state: &Path) -> Result<()> {
        let summary_agrees = self
            .hosts
            .iter()
            .all(|(host, plan)| pushed.results.get(host) == Some(&plan.result.to_string()));
        if pushed.code != Some(self.code) || !summary_agrees {
            bail!("{}", pushed.describe());
        }
        self.check_hosts(lab, key_file, state)
    }

    /// Checks every host's status (its last deploy and the revision it
    /// runs, from `push status --json`) against the plan.
    pub fn check_hosts(&self, lab: &Lab, key_file: &Path, state: &Path) -> Result<()> {
        let statuses = host_statuses(lab, key_file, state)?;
        for (host, plan) in &self.hosts {
            let status = statuses
                .get(host)
                .with_context(|| format!("push status does not list {host}"))?;
            let last = status.last_deploy.as_ref().map(|deploy| deploy.state);
            let runs = status
                .current_deploy
                .as_ref()
                .and_then(|deploy| deploy.rev.as_ref())
                .map(|rev| rev.as_str().to_owned());
            if last != Some(plan.result) || runs.as_deref() != Some(plan.runs.as_str()) {
                bail!(
                    "{host} was to end {}, but push status says its last deploy {} and it runs {}",
                    plan.result,
                    last.map_or("is missing".to_owned(), |state| format!("ended {state}")),
                    runs.as_deref()
                        .map_or("no known revision", |rev| &rev[..12]),
                );
            }
        }
        Ok(())
    }
}

/// Every host's status, from `push status --json`.
fn host_statuses(
    lab: &Lab,
    key_file: &Path,
    state: &Path,
) -> Result<BTreeMap<String, StatusResponse>> {
    let output = lab
        .push_command(key_file, state)?
        .args(["status", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running push status --json")?;
    let answers: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("reading push status --json")?;
    let mut statuses = BTreeMap::new();
    for (host, answer) in answers {
        match answer.get("status") {
            Some(status) => {
                let status: StatusResponse = serde_json::from_value(status.clone())
                    .with_context(|| format!("reading {host}'s status"))?;
                statuses.insert(host, status);
            }
            None => bail!("push status cannot reach {host}: {}", answer["unreachable"]),
        }
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_table_and_not_the_reasons() {
        let summary = "HOST       REV           RESULT       TIME  REBOOT\n\
                       ankarana   29b8836061d0  rolled_back  0s    no\n\
                       isalo      29b8836061d0  succeeded    0s    no\n\
                       ankarana: activation_failed: switch-to-configuration exited with status 2: the activation script failed\n";
        let results = summary_results(summary);
        assert_eq!(results.len(), 2);
        assert_eq!(results["ankarana"], "rolled_back");
        assert_eq!(results["isalo"], "succeeded");
        assert!(summary_results("push: the build failed\n").is_empty());
    }
}
