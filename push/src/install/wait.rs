//! `push install --wait`: after the install, wait until the new machine
//! has booted its new system and its deployd answers (`GET /healthz`), with
//! that system as its current one (`GET /v1/status`): from then on
//! `push --host HOST` deploys to it.

use std::time::{Duration, Instant};

use deployd_protocol::api::StatusResponse;
use deployd_protocol::StorePath;

use crate::client::Client;
use crate::inventory::Target;

/// How often the host is asked.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often "still waiting" is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// How one look at the host went.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Its deployd answers and runs the installed system.
    Ready,
    /// Not yet, and why.
    NotYet(String),
}

/// What a status says about the installed system.
pub fn read_status(status: &StatusResponse, system: &StorePath) -> Look {
    match status.current_system.as_deref() {
        Some(current) if current == system.as_str() => Look::Ready,
        Some(current) => Look::NotYet(format!("its deployd answers, running {current}")),
        None => Look::NotYet("its deployd answers, with no current system".into()),
    }
}

async fn look(client: &Client, target: &Target, system: &StorePath) -> Look {
    if let Err(error) = client.healthy(target).await {
        return Look::NotYet(format!("its deployd does not answer ({error})"));
    }
    match client.status(target).await {
        Ok(status) => read_status(&status, system),
        Err(error) => Look::NotYet(format!("its status: {error}")),
    }
}

/// Waits up to `timeout` for the host to run `system`; `Err` with the last
/// reason when it does not.
pub async fn until_running(
    client: &Client,
    target: &Target,
    system: &StorePath,
    timeout: Duration,
) -> Result<(), String> {
    let host = &target.name;
    eprintln!(
        "push: waiting for {host} to boot and its deployd to answer at {} (up to {} s)",
        target.url,
        timeout.as_secs()
    );
    let started = Instant::now();
    let mut last_progress = started;
    loop {
        let why = match look(client, target, system).await {
            Look::Ready => return Ok(()),
            Look::NotYet(why) => why,
        };
        if started.elapsed() >= timeout {
            return Err(format!(
                "{host} did not come up running its installed system within {} s: {why}",
                timeout.as_secs()
            ));
        }
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            eprintln!(
                "push: still waiting for {host} ({} s): {why}",
                started.elapsed().as_secs()
            );
        }
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::sleep(POLL_INTERVAL.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_the_installed_system_is_current() {
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh"
            .parse()
            .expect("path");
        let mut status: StatusResponse = serde_json::from_value(serde_json::json!({
            "hostname": "fresh",
            "current_system": null,
            "booted_system": null,
            "generations": [],
            "current_deploy": null,
            "active_deploy": null,
            "last_deploy": null,
            "reboot_required": false,
            "daemon_version": "0",
            "nix_version": null
        }))
        .expect("status");
        assert!(matches!(read_status(&status, &system), Look::NotYet(_)));
        status.current_system = Some("/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-other".into());
        assert!(
            matches!(read_status(&status, &system), Look::NotYet(why) if why.contains("-other"))
        );
        status.current_system = Some(system.to_string());
        assert_eq!(read_status(&status, &system), Look::Ready);
    }
}
