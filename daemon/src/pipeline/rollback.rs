//! Going back: the rollback after a failed switch, an unconfirmed deploy or
//! failed health checks, and undoing a profile change whose switch never
//! ran. Each is written down before it changes anything, so a restarted
//! daemon resumes it (see `resume`).

use deployd_command as command;
use deployd_protocol::api::{DeployFailure, DeployState};
use deployd_protocol::{DeployId, FailureCode};

use super::{nix, preflight, run_switch, Ending, SwitchOutcome, SwitchStatus, SwitchTarget};
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
    why: DeployFailure,
) -> Result<Ending, StateError> {
    let Some(deploy) = daemon.deploy(id.as_str()) else {
        return Ok(Ending::failed(
            FailureCode::Internal,
            "the deploy's record vanished",
        ));
    };
    if deploy.progress.rolling_back.is_none() {
        let reason = why.clone();
        let mark = |deploy: &mut StoredDeploy| {
            deploy.progress.rolling_back = Some(reason.message);
            deploy.progress.rolling_back_code = Some(reason.code);
        };
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
        return Ok(Ending::ended(
            DeployState::Failed,
            DeployFailure {
                message: format!(
                    "{}; there is no previous system to roll back to",
                    why.message
                ),
                code: why.code,
            },
        ));
    };
    daemon.log(
        id,
        &format!("deployd: {}; rolling back to {previous}", why.message),
    );
    if let (true, Some(number)) = (action.sets_profile(), deploy.progress.previous_generation) {
        let back = nix::switch_generation(&daemon.config(), number);
        if let Err(error) = command::run(&back, |line| daemon.log(id, line)).await {
            return Ok(Ending::failed(
                FailureCode::RollbackFailed,
                format!("{}; setting the profile back failed: {error}", why.message),
            ));
        }
    }
    let target = SwitchTarget {
        system: previous.as_str(),
        action,
    };
    let outcome = switch_back(daemon, id, target).await?;
    Ok(conclude_rollback(&previous, outcome, why))
}

/// Why a deploy rolls back, as written down (`message`) with its code
/// (records of an earlier daemon have none: `switch_failed`).
pub(super) fn rollback_reason(deploy: &StoredDeploy, message: &str) -> DeployFailure {
    let code = deploy
        .progress
        .rolling_back_code
        .as_deref()
        .unwrap_or(FailureCode::SwitchFailed.as_str());
    DeployFailure {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Runs the switch back to `target`, and again while another switch holds
/// the lock (never giving up the rollback because of it), within the switch
/// timeout.
pub(super) async fn switch_back(
    daemon: &Daemon,
    id: &DeployId,
    target: SwitchTarget<'_>,
) -> Result<SwitchOutcome, StateError> {
    let deadline = tokio::time::Instant::now() + daemon.config().switch_timeout();
    loop {
        if preflight::wait_for_switch_lock(daemon, id, deadline)
            .await
            .is_err()
        {
            return Ok(SwitchOutcome::Exited(SwitchStatus::Locked));
        }
        let outcome = run_switch(daemon, id, SwitchKind::Rollback, target).await?;
        if outcome != SwitchOutcome::Exited(SwitchStatus::Locked)
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(outcome);
        }
        daemon.log(
            id,
            "deployd: another switch took the switch lock first; waiting for it",
        );
        tokio::time::sleep(preflight::LOCK_POLL).await;
    }
}

/// How a rollback ended, given why it happened. The previous system's
/// switch reporting failed units (status 4) or a reboot to take effect
/// (status 100) still brought it back.
pub(super) fn conclude_rollback(
    previous: &str,
    outcome: SwitchOutcome,
    why: DeployFailure,
) -> Ending {
    let DeployFailure { code, message } = why;
    // Rolled back for the reason given, under its code.
    let back = |message: String| {
        Ending::ended(
            DeployState::RolledBack,
            DeployFailure {
                code: code.clone(),
                message,
            },
        )
    };
    match outcome {
        SwitchOutcome::Succeeded => back(format!("{message}; the previous system {previous} is active again")),
        SwitchOutcome::Exited(SwitchStatus::UnitsFailed) => back(format!("{message}; the previous system {previous} is active again, though its switch reported failed units (see the log)")),
        SwitchOutcome::Exited(SwitchStatus::NeedsReboot) => back(format!("{message}; the previous system {previous} is the boot default again and takes effect at the next boot")),
        SwitchOutcome::Exited(status) => Ending::failed(
            FailureCode::RollbackFailed,
            format!("{message}; switching back to {previous} failed too: {status}"),
        ),
        SwitchOutcome::Failed(rollback_why) => Ending::failed(
            FailureCode::RollbackFailed,
            format!("{message}; switching back to {previous} failed too: {rollback_why}"),
        ),
        SwitchOutcome::NeverStarted => Ending::failed(
            FailureCode::RollbackFailed,
            format!("{message}; the switch back to {previous} never started"),
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
        return Ok(Ending::failed(
            FailureCode::Internal,
            "the deploy's record vanished",
        ));
    };
    let progress = &deploy.progress;
    let profile = Profile::new(&daemon.config().file.activation.system_profile);
    let profile_moved = progress.profile_change_started
        && profile.current_generation() != progress.previous_generation;
    match (profile_moved, progress.previous_generation) {
        (false, _) => Ok(Ending::failed(
            FailureCode::Interrupted,
            format!("{why}; nothing was changed"),
        )),
        (true, Some(number)) => {
            let back = nix::switch_generation(&daemon.config(), number);
            match command::run(&back, |line| daemon.log(id, line)).await {
                Ok(_) => Ok(Ending::rolled_back(
                    FailureCode::Interrupted,
                    format!("{why}; the profile is back at generation {number}"),
                )),
                Err(error) => Ok(Ending::failed(
                    FailureCode::RollbackFailed,
                    format!("{why}, and setting the profile back failed: {error}"),
                )),
            }
        }
        (true, None) => Ok(Ending::failed(
            FailureCode::Interrupted,
            format!("{why}; the profile holds the new system, which was never activated"),
        )),
    }
}
