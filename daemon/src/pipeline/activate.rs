//! Activating a fetched system: the checks NixOS would make before the
//! profile moves ([`preflight`]), the profile, the switch, and what its exit
//! status means for the deploy ([`SwitchStatus`]): go on, succeed at the
//! next boot, or roll back.

use deployd_command as command;
use deployd_protocol::{Action, DeployId, FailureCode};

use super::preflight::{self, Checks};
use super::rollback::{roll_back, undo_profile};
use super::switch::{self, SwitchOutcome, SwitchStatus, SwitchTarget};
use super::{after_switch, failure, health, nix, record_success, Activated, AfterSwitch, Ending};
use crate::daemon::Daemon;
use crate::state::{StateError, StoredDeploy, SwitchKind};
use crate::system::{read_link, Profile};

/// Sets the profile (for `switch` and `boot`) and runs the switch, once no
/// other switch holds the lock and the new system's pre-switch checks let
/// it. Should another switch take the lock between the look and the
/// switch's own attempt (which then changes nothing), the profile is set
/// back and the whole is done again, within the switch timeout.
pub(super) async fn activate(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
) -> Result<Ending, StateError> {
    let config = daemon.config();
    let activation = &config.file.activation;
    let profile = Profile::new(&activation.system_profile);
    let action = deploy.record.action;
    let system = deploy.record.store_path.clone();
    let asked = deploy.progress.specialisation.as_deref();
    let target = match preflight::switch_target(daemon, id, system.as_str(), asked) {
        Ok(target) => target,
        Err(ending) => return Ok(ending),
    };
    let deadline = tokio::time::Instant::now() + config.switch_timeout();
    loop {
        if let Err(ending) = preflight::wait_for_switch_lock(daemon, id, deadline).await {
            return Ok(ending);
        }
        match preflight::run_pre_switch_checks(daemon, id, &target, action, deadline).await {
            Checks::Passed => {}
            Checks::Locked => {
                // Taken between the look and the checks: look again soon.
                tokio::time::sleep(preflight::LOCK_POLL).await;
                continue;
            }
            Checks::Refused(ending) => return Ok(ending),
        }
        let previous_system = match action {
            Action::Boot => profile.current_system(),
            _ => read_link(&activation.current_system).or_else(|| profile.current_system()),
        };
        let previous_generation = profile.current_generation();
        daemon.update(id, |deploy| {
            deploy.record.previous_system = previous_system.clone();
            deploy.progress.previous_generation = previous_generation;
            deploy.progress.profile_change_started = action.sets_profile();
        })?;
        if action.sets_profile() {
            // A requested rollback moves the profile back; a deploy adds a generation.
            let change = match deploy.progress.rollback_to_generation {
                Some(number) => nix::switch_generation(&config, number),
                None => nix::set_profile(&config, &system),
            };
            if let Err(error) = command::run(&change, |line| daemon.log(id, line)).await {
                // `nix-env` replaces the profile link atomically, or not at all.
                return Ok(Ending::failed(
                    FailureCode::ProfileFailed,
                    format!("setting the system profile failed: {error}"),
                ));
            }
        }
        health::remember_failed_units(daemon, id, action).await?;
        let switch_to = SwitchTarget {
            system: &target,
            action,
        };
        let outcome = run_switch(daemon, id, SwitchKind::Forward, switch_to).await?;
        let lost_the_lock = outcome == SwitchOutcome::Exited(SwitchStatus::Locked);
        if lost_the_lock && tokio::time::Instant::now() < deadline {
            daemon.log(
                id,
                "deployd: another switch took the switch lock first; setting the profile back and waiting for it",
            );
            if let (true, Some(number)) = (action.sets_profile(), previous_generation) {
                let back = nix::switch_generation(&config, number);
                if let Err(error) = command::run(&back, |line| daemon.log(id, line)).await {
                    return Ok(Ending::failed(
                        FailureCode::RollbackFailed,
                        format!("another switch held the lock, and setting the profile back failed: {error}"),
                    ));
                }
            }
            tokio::time::sleep(preflight::LOCK_POLL).await;
            continue;
        }
        return conclude_switch(daemon, id, deploy, outcome).await;
    }
}

/// Plans a switch, writes the plan into the record, starts it, waits.
pub(super) async fn run_switch(
    daemon: &Daemon,
    id: &DeployId,
    kind: SwitchKind,
    target: SwitchTarget<'_>,
) -> Result<SwitchOutcome, StateError> {
    let launch = switch::plan(daemon, id, kind, target);
    daemon.update(id, |deploy| {
        let slot = match kind {
            SwitchKind::Forward => &mut deploy.progress.switch,
            SwitchKind::Rollback => &mut deploy.progress.rollback_switch,
        };
        *slot = Some(launch.clone());
    })?;
    if let Err(error) = switch::start(daemon, id, &launch).await {
        // `systemd-run` can fail after the unit began (a timeout, a lost
        // bus): never start another switch over it. Wait for this one, or
        // for the proof that it never began (no pid within the grace).
        daemon.log(
            id,
            &format!("deployd: starting the switch reported an error: {error}; waiting to see whether it runs"),
        );
    }
    Ok(switch::wait(daemon, id, &launch).await)
}

/// After the new system's switch ended: succeed, or roll back, as its exit
/// status says (see [`SwitchStatus`]).
pub(super) async fn conclude_switch(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
    outcome: SwitchOutcome,
) -> Result<Ending, StateError> {
    let action = deploy.record.action;
    let launched = daemon
        .deploy(id.as_str())
        .and_then(|deploy| deploy.progress.switch);
    let target = launched.as_ref().map_or_else(
        || deploy.record.store_path.to_string(),
        |launch| launch.system.clone(),
    );
    match outcome {
        SwitchOutcome::NeverStarted => undo_profile(daemon, id, "the switch never started").await,
        SwitchOutcome::Succeeded => after_switch(daemon, id, deploy, AfterSwitch::Confirm).await,
        SwitchOutcome::Exited(status) if action == Action::DryActivate => Ok(Ending::failed(
            status.error_code(),
            format!("dry-activate failed: {status}"),
        )),
        SwitchOutcome::Failed(why) if action == Action::DryActivate => Ok(Ending::failed(
            FailureCode::SwitchFailed,
            format!("dry-activate failed: {why}"),
        )),
        SwitchOutcome::Exited(SwitchStatus::NotActivated)
            if launched.as_ref().is_some_and(switch::refused_by_checks) =>
        {
            // Refused before it changed anything: set the profile back,
            // and nothing to activate again.
            let undone =
                undo_profile(daemon, id, "the pre-switch checks refused the switch").await?;
            let setting_back_failed = undone
                .failure
                .as_ref()
                .is_some_and(|failure| failure.code == FailureCode::RollbackFailed.as_str());
            Ok(if setting_back_failed {
                undone
            } else {
                preflight::inhibited(&target)
            })
        }
        SwitchOutcome::Exited(SwitchStatus::Locked) => {
            // Only a daemon restarted mid-switch gets here (a running one
            // waits and tries again): the switch changed nothing.
            undo_profile(
                daemon,
                id,
                "another switch-to-configuration held the switch lock",
            )
            .await
        }
        SwitchOutcome::Exited(SwitchStatus::UnitsFailed)
            if launched.as_ref().is_some_and(switch::activation_failed) =>
        {
            // Status 4 hides a failed activation: a half-activated system.
            let code = SwitchStatus::ActivationFailed.error_code();
            let message = "the activation script failed, and units failed (switch-to-configuration exited with status 4)";
            roll_back(daemon, id, failure(code, message)).await
        }
        SwitchOutcome::Exited(SwitchStatus::UnitsFailed) => {
            daemon.log(
                id,
                "deployd: the switch reported failed units (status 4); the health checks judge them (units failed before the deploy and allowed_failed_units do not count)",
            );
            after_switch(daemon, id, deploy, AfterSwitch::Confirm).await
        }
        SwitchOutcome::Exited(SwitchStatus::NeedsReboot) if action == Action::Switch => {
            daemon.log(
                id,
                "deployd: the new system's init interface differs from the running one's (status 100): it is the boot default and takes effect at the next boot; a reboot is required",
            );
            record_success(daemon, id, deploy, Activated::AtNextBoot).await;
            Ok(Ending::succeeded())
        }
        SwitchOutcome::Exited(status @ SwitchStatus::NeedsReboot) => Ok(Ending::failed(
            status.error_code(),
            format!("{status}; nothing was activated: deploy it with --action boot and reboot"),
        )),
        SwitchOutcome::Exited(status) => {
            roll_back(daemon, id, failure(status.error_code(), status.to_string())).await
        }
        SwitchOutcome::Failed(why) => {
            roll_back(daemon, id, failure(FailureCode::SwitchFailed, why)).await
        }
    }
}
