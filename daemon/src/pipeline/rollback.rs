//! Going back: the rollback after a failed switch, an unconfirmed deploy or
//! failed health checks, and undoing a profile change whose switch never
//! ran. Each is written down before it changes anything, so a restarted
//! daemon resumes it (see `resume`).

use deployd_command as command;
use deployd_protocol::api::DeployState;
use deployd_protocol::DeployId;

use super::{nix, run_switch, Ending, SwitchOutcome, SwitchTarget};
use crate::daemon::Daemon;
use crate::state::{StateError, StoredDeploy, SwitchKind};
use crate::system::Profile;

/// The new system's switch, confirmation or health failed: return to the
/// previous generation. The rollback is written down first, with the state
/// back to `activating` (a confirm is refused from then on), so a restarted
/// daemon resumes it instead of the step it interrupted.
pub(super) async fn roll_back(
    daemon: &Daemon,
    id: &DeployId,
    why: String,
) -> Result<Ending, StateError> {
    let Some(deploy) = daemon.deploy(id.as_str()) else {
        return Ok(Ending::failed("internal", "the deploy's record vanished"));
    };
    if deploy.progress.rolling_back.is_none() {
        let reason = why.clone();
        let mark = |deploy: &mut StoredDeploy| deploy.progress.rolling_back = Some(reason);
        if deploy.record.state == DeployState::Activating {
            daemon.update(id, mark)?;
        } else {
            daemon.enter_with(id, DeployState::Activating, mark)?;
        }
    }
    let action = deploy.record.action;
    let (Some(previous), true) = (
        deploy.record.previous_system.clone(),
        deploy.progress.previous_generation.is_some() || !action.sets_profile(),
    ) else {
        return Ok(Ending::failed(
            "switch_failed",
            format!("{why}; there is no previous system to roll back to"),
        ));
    };
    daemon.log(id, &format!("deployd: {why}; rolling back to {previous}"));
    if let (true, Some(number)) = (action.sets_profile(), deploy.progress.previous_generation) {
        let back = nix::switch_generation(&daemon.config, number);
        if let Err(error) = command::run(&back, |line| daemon.log(id, line)).await {
            return Ok(Ending::failed(
                "rollback_failed",
                format!("{why}; setting the profile back failed: {error}"),
            ));
        }
    }
    let target = SwitchTarget {
        system: previous.as_str(),
        action,
    };
    let outcome = run_switch(daemon, id, SwitchKind::Rollback, target).await?;
    Ok(conclude_rollback(&previous, outcome, why))
}

pub(super) fn conclude_rollback(previous: &str, outcome: SwitchOutcome, why: String) -> Ending {
    match outcome {
        SwitchOutcome::Succeeded => Ending::rolled_back(
            "switch_failed",
            format!("{why}; the previous system {previous} is active again"),
        ),
        SwitchOutcome::Failed(rollback_why) => Ending::failed(
            "rollback_failed",
            format!("{why}; switching back to {previous} failed too: {rollback_why}"),
        ),
        SwitchOutcome::NeverStarted => Ending::failed(
            "rollback_failed",
            format!("{why}; the switch back to {previous} never started"),
        ),
    }
}

/// Nothing was activated: set the profile back if this deploy moved it.
pub(super) async fn undo_profile(
    daemon: &Daemon,
    id: &DeployId,
    why: &str,
) -> Result<Ending, StateError> {
    let Some(deploy) = daemon.deploy(id.as_str()) else {
        return Ok(Ending::failed("internal", "the deploy's record vanished"));
    };
    let progress = &deploy.progress;
    let profile = Profile::new(&daemon.config.file.activation.system_profile);
    let profile_moved = progress.profile_change_started
        && profile.current_generation() != progress.previous_generation;
    match (profile_moved, progress.previous_generation) {
        (false, _) => Ok(Ending::failed(
            "interrupted",
            format!("{why}; nothing was changed"),
        )),
        (true, Some(number)) => {
            let back = nix::switch_generation(&daemon.config, number);
            match command::run(&back, |line| daemon.log(id, line)).await {
                Ok(_) => Ok(Ending::rolled_back(
                    "interrupted",
                    format!("{why}; the profile is back at generation {number}"),
                )),
                Err(error) => Ok(Ending::failed(
                    "rollback_failed",
                    format!("{why}, and setting the profile back failed: {error}"),
                )),
            }
        }
        (true, None) => Ok(Ending::failed(
            "interrupted",
            format!("{why}; the profile holds the new system, which was never activated"),
        )),
    }
}
