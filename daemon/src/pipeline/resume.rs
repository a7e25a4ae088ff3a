//! Where a deploy goes on from: the one place that reads a deploy's state
//! and progress and decides its next step, for a new deploy and for one a
//! previous daemon left unfinished. Pure, so every case is tested here.
//!
//! The rules, in order: a rollback once written down is resumed whatever
//! step it interrupted; a switch once launched is never launched again, only
//! waited for; a step that changed nothing is reported as interrupted.

use std::fmt;

use deployd_protocol::api::DeployState;

use crate::state::{StoredDeploy, SwitchLaunch};

/// What to do next with a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// A deploy just received: check its request is still valid, then run it.
    Start,
    /// Nothing was changed and nothing more will be: end it `failed`.
    Interrupted {
        /// Why, for the record.
        message: String,
    },
    /// The switch back to the previous system was launched (or planned):
    /// wait for it, or start it if it never began.
    FinishRollbackSwitch {
        /// The planned switch.
        launch: &'a SwitchLaunch,
        /// Why the deploy rolls back.
        why: &'a str,
    },
    /// A rollback was decided, its switch not planned yet: run it.
    RollBack {
        /// Why the deploy rolls back.
        why: &'a str,
    },
    /// The new system's switch was launched: wait for it, then go on.
    FinishSwitch {
        /// The launched switch.
        launch: &'a SwitchLaunch,
    },
    /// The daemon stopped before the switch: set the profile back if it moved.
    UndoProfile,
    /// The new system runs and waits for its confirmation.
    AwaitConfirm,
    /// The new system runs and its health is being checked: check again.
    CheckHealth,
}

/// Why a rollback with no reason written down happens (records of an
/// earlier daemon that planned the switch back before it wrote a reason).
const UNSTATED_ROLLBACK: &str = "the switch failed";

/// The next step of `deploy`.
pub fn next_step(deploy: &StoredDeploy) -> Step<'_> {
    let progress = &deploy.progress;
    let state = deploy.record.state;
    if state.is_final() {
        return Step::Interrupted {
            message: format!("deployd stopped in state {state}; nothing more was done"),
        };
    }
    if let Some(launch) = &progress.rollback_switch {
        let why = progress
            .rolling_back
            .as_deref()
            .unwrap_or(UNSTATED_ROLLBACK);
        return Step::FinishRollbackSwitch { launch, why };
    }
    if let Some(why) = &progress.rolling_back {
        return Step::RollBack { why };
    }
    match state {
        DeployState::Received => Step::Start,
        DeployState::Fetching => Step::Interrupted {
            message: "deployd stopped while fetching; nothing was changed".into(),
        },
        DeployState::AwaitingConfirm => Step::AwaitConfirm,
        DeployState::CheckingHealth => Step::CheckHealth,
        _ => match &progress.switch {
            Some(launch) => Step::FinishSwitch { launch },
            None => Step::UndoProfile,
        },
    }
}

impl fmt::Display for Step<'_> {
    /// What a restarted daemon tells the deploy's log it does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Start => f.write_str("starting the deploy"),
            Step::Interrupted { .. } => f.write_str("the deploy cannot go on"),
            Step::FinishRollbackSwitch { .. } => f.write_str("finishing the switch back"),
            Step::RollBack { .. } => f.write_str("finishing the rollback"),
            Step::FinishSwitch { .. } => f.write_str("waiting for the switch it launched"),
            Step::UndoProfile => f.write_str("the switch never ran; undoing the profile change"),
            Step::AwaitConfirm => f.write_str("waiting for the confirmation"),
            Step::CheckHealth => f.write_str("checking the health again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Progress;
    use deployd_protocol::api::DeployRecord;
    use deployd_protocol::Action;

    fn deploy(state: DeployState, progress: Progress) -> StoredDeploy {
        let record: DeployRecord = serde_json::from_value(serde_json::json!({
            "deploy_id": "d-1",
            "host": "sambirano",
            "store_path": "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano",
            "action": "switch",
            "key": "ops-1",
            "issued_at": 1,
            "state": state,
            "phases": [],
            "reboot_required": false,
            "log_tail": [],
            "created_at_ms": 1,
        }))
        .expect("record");
        StoredDeploy { record, progress }
    }

    fn launch(system: &str) -> SwitchLaunch {
        SwitchLaunch {
            system: system.into(),
            action: Action::Switch,
            unit: None,
            log_file: "switch.log".into(),
            status_file: "switch.status".into(),
            pid_file: "switch.pid".into(),
            boot_id: None,
        }
    }

    #[test]
    fn steps_before_the_switch() {
        let none = Progress::default();
        assert_eq!(
            next_step(&deploy(DeployState::Received, none.clone())),
            Step::Start
        );
        assert!(matches!(
            next_step(&deploy(DeployState::Fetching, none.clone())),
            Step::Interrupted { message } if message.contains("while fetching")
        ));
        assert_eq!(
            next_step(&deploy(DeployState::Activating, none)),
            Step::UndoProfile
        );
    }

    #[test]
    fn a_launched_switch_is_waited_for_never_launched_again() {
        let progress = Progress {
            switch: Some(launch("/new")),
            ..Progress::default()
        };
        let deploy = deploy(DeployState::Activating, progress);
        assert!(
            matches!(next_step(&deploy), Step::FinishSwitch { launch } if launch.system == "/new")
        );
    }

    #[test]
    fn after_the_switch_the_step_it_was_in() {
        let switched = Progress {
            switch: Some(launch("/new")),
            ..Progress::default()
        };
        for (state, step) in [
            (DeployState::AwaitingConfirm, Step::AwaitConfirm),
            (DeployState::CheckingHealth, Step::CheckHealth),
        ] {
            assert_eq!(next_step(&deploy(state, switched.clone())), step);
        }
    }

    #[test]
    fn a_rollback_written_down_wins_over_the_step_it_interrupted() {
        // Decided in any state (the state is set back to `activating` with
        // the reason, but an older record may say otherwise).
        for state in [
            DeployState::Activating,
            DeployState::AwaitingConfirm,
            DeployState::CheckingHealth,
        ] {
            let deciding = Progress {
                switch: Some(launch("/new")),
                rolling_back: Some("not confirmed".into()),
                ..Progress::default()
            };
            assert_eq!(
                next_step(&deploy(state, deciding.clone())),
                Step::RollBack {
                    why: "not confirmed"
                },
                "{state}"
            );
            let switching_back = Progress {
                rollback_switch: Some(launch("/old")),
                ..deciding
            };
            let deploy = deploy(state, switching_back);
            assert!(
                matches!(
                    next_step(&deploy),
                    Step::FinishRollbackSwitch { launch, why: "not confirmed" } if launch.system == "/old"
                ),
                "{state}"
            );
        }
    }

    #[test]
    fn a_planned_switch_back_without_a_reason_still_finishes() {
        let progress = Progress {
            rollback_switch: Some(launch("/old")),
            ..Progress::default()
        };
        let deploy = deploy(DeployState::Activating, progress);
        assert!(matches!(
            next_step(&deploy),
            Step::FinishRollbackSwitch {
                why: UNSTATED_ROLLBACK,
                ..
            }
        ));
    }

    #[test]
    fn a_final_deploy_goes_nowhere() {
        for state in [
            DeployState::Succeeded,
            DeployState::Failed,
            DeployState::RolledBack,
        ] {
            let progress = Progress {
                rolling_back: Some("x".into()),
                ..Progress::default()
            };
            assert!(matches!(
                next_step(&deploy(state, progress)),
                Step::Interrupted { .. }
            ));
        }
    }
}
