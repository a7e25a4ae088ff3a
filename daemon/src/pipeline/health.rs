//! Health checks after an activation: commands that must exit 0 in time,
//! `http://` and `https://` URLs that must answer a GET with 2xx
//! ([`http`]), and, where systemd runs,
//! no failed unit but the allowed ones and those already failed before the
//! deploy (listed before its switch, kept in its progress). All are run in
//! rounds until one round passes or the deadline passes; the last round's
//! report says why.

pub(crate) mod http;

use std::time::Duration;

use crate::config::HealthSection;
use crate::daemon::Daemon;
use crate::state::StateError;
use deployd_command::{self as command, Invocation};
use deployd_protocol::{Action, DeployId};

/// How long an HTTP check may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `systemctl is-system-running --wait` may wait (less when the
/// deadline is nearer).
const SYSTEMD_TIMEOUT: Duration = Duration::from_secs(300);
pub use http::HttpChecker;

/// Whether any check is configured (for this machine).
pub fn configured(health: &HealthSection, systemd: bool) -> bool {
    !health.commands.is_empty() || !health.http.is_empty() || (health.systemd && systemd)
}

/// Before the switch of a `switch` or `test` that the systemd check will
/// follow: writes the units failed now into the deploy's progress, so that
/// their failures are not taken for the deploy's. (NixOS's switch runs
/// `systemctl reset-failed`; what matters is a unit that fails again on its
/// own after it, such as a job its timer starts.) A list that cannot be
/// made is logged, and every failed unit then counts.
pub async fn remember_failed_units(
    daemon: &Daemon,
    id: &DeployId,
    action: Action,
) -> Result<(), StateError> {
    let checked = matches!(action, Action::Switch | Action::Test)
        && daemon.config().file.health.systemd
        && daemon.systemd;
    if !checked {
        return Ok(());
    }
    let failed = match failed_units(daemon, |_| {}).await {
        Ok(failed) => failed,
        Err(why) => {
            daemon.log(
                id,
                &format!("deployd: {why}; every unit failed after the switch will count"),
            );
            Vec::new()
        }
    };
    if !failed.is_empty() {
        daemon.log(
            id,
            &format!(
                "deployd: already failed before the deploy: {}",
                failed.join(", ")
            ),
        );
    }
    daemon.update(id, |deploy| deploy.progress.failed_before = failed)?;
    Ok(())
}

/// Runs the checks in rounds until all pass (`Ok`) or the deadline passes
/// (`Err` with the last round's failures). No check runs past the deadline:
/// each one's time limit is cut to what is left of it.
pub async fn check(daemon: &Daemon, id: &DeployId) -> Result<(), String> {
    let health = &daemon.config().file.health;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(health.deadline_s);
    let http = HttpChecker::for_urls(&health.http, health.ca_file.as_deref());
    let mut round = 1;
    loop {
        let failures = one_round(daemon, id, &http, deadline).await;
        if failures.is_empty() {
            daemon.log(
                id,
                &format!("deployd: health checks passed (round {round})"),
            );
            return Ok(());
        }
        for failure in &failures {
            daemon.log(
                id,
                &format!("deployd: health check failed (round {round}): {failure}"),
            );
        }
        if tokio::time::Instant::now() + Duration::from_secs(health.interval_s) > deadline {
            return Err(failures.join("; "));
        }
        tokio::time::sleep(Duration::from_secs(health.interval_s)).await;
        round += 1;
    }
}

/// What is left until `deadline` (at least a second, so a check can run),
/// or `limit` if that is less.
fn time_left(deadline: tokio::time::Instant, limit: Duration) -> Duration {
    deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1))
        .min(limit)
}

async fn one_round(
    daemon: &Daemon,
    id: &DeployId,
    http: &HttpChecker,
    deadline: tokio::time::Instant,
) -> Vec<String> {
    let health = &daemon.config().file.health;
    let mut failures = Vec::new();
    for check in &health.commands {
        let Some((program, args)) = check.command.split_first() else {
            continue;
        };
        let timeout = time_left(deadline, Duration::from_secs(check.timeout_s));
        let invocation = Invocation::new(program, args, timeout);
        if let Err(error) = command::run(&invocation, |line| daemon.log(id, line)).await {
            failures.push(error.to_string());
        }
    }
    for url in &health.http {
        if let Err(why) = http.get(url, time_left(deadline, HTTP_TIMEOUT)).await {
            failures.push(format!("GET {url}: {why}"));
        }
    }
    if health.systemd && daemon.systemd {
        let timeout = time_left(deadline, SYSTEMD_TIMEOUT);
        if let Err(why) = systemd_state(daemon, id, &health.allowed_failed_units, timeout).await {
            failures.push(why);
        }
    }
    failures
}

/// `systemctl is-system-running --wait` (which waits for the boot to end),
/// then, unless it says `running`, the failed units less the allowed ones
/// and those already failed before the deploy: `degraded` alone says only
/// that some unit failed, not whose fault it is.
async fn systemd_state(
    daemon: &Daemon,
    id: &DeployId,
    allowed: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let systemctl = &daemon.config().file.activation.systemctl;
    let running = Invocation::new(systemctl, ["is-system-running", "--wait"], timeout);
    if command::run(&running, |_| {}).await.is_ok() {
        return Ok(());
    }
    let failed_before = daemon
        .deploy(id.as_str())
        .map(|deploy| deploy.progress.failed_before)
        .unwrap_or_default();
    let failed: Vec<String> = failed_units(daemon, |line| daemon.log(id, line))
        .await?
        .into_iter()
        .filter(|unit| !allowed.contains(unit))
        .filter(|unit| {
            let before = failed_before.contains(unit);
            if before {
                daemon.log(
                    id,
                    &format!("deployd: {unit} was already failed before the deploy; not counted"),
                );
            }
            !before
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed units: {}", failed.join(", ")))
    }
}

/// The units systemd lists as failed.
async fn failed_units(daemon: &Daemon, on_line: impl FnMut(&str)) -> Result<Vec<String>, String> {
    let list = Invocation::new(
        &daemon.config().file.activation.systemctl,
        [
            "list-units",
            "--state=failed",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
        Duration::from_secs(30),
    );
    let listed = command::run(&list, on_line)
        .await
        .map_err(|error| format!("cannot list failed units: {error}"))?;
    Ok(unit_names(&listed.stdout))
}

/// The unit names of `systemctl list-units --plain --no-legend` (the first
/// word of each line; a `●` systemd may put first is skipped).
fn unit_names(listed: &str) -> Vec<String> {
    listed
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| !word.starts_with('\u{25cf}'))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_unit_names() {
        let listed = "lab-flaky.service loaded failed failed a job of the host that fails\n\
                      \u{25cf} nix-gc.service loaded failed failed Nix Garbage Collector\n\n";
        assert_eq!(unit_names(listed), ["lab-flaky.service", "nix-gc.service"]);
        assert!(unit_names("").is_empty());
    }
}
