//! A deploy, step by step: fetch → check it is a NixOS system → set the
//! profile → switch → succeeded; or roll back when the switch fails. Each
//! step that changes the machine is written into the deploy's progress
//! before it is taken, so [`run`] can also finish a deploy that a previous
//! daemon left unfinished: it never activates a system twice, and it ends
//! every deploy in a truthful state.

mod activate;
mod fetch;
pub mod health;
pub(crate) mod nix;
mod preflight;
pub mod prepared;
mod resume;
mod rollback;
mod switch;

pub use switch::{SwitchOutcome, SwitchStatus, SwitchTarget};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployd_protocol::api::{DeployFailure, DeployState};
use deployd_protocol::{Action, DeployId, FailureCode};

use crate::daemon::Daemon;
use crate::state::{StateError, StoredDeploy};
use crate::system::{
    check_nixos_system, read_link, reboot_required, runs_another_daemon, specialisation_of, Profile,
};
use activate::{activate, conclude_switch, run_switch};
use deployd_command as command;
use deployd_command::CommandError;
use nix::Freshness;
use resume::Step;
use rollback::{conclude_rollback, roll_back, rollback_reason, switch_back, undo_profile};

/// How a deploy ends.
#[derive(Debug)]
struct Ending {
    state: DeployState,
    failure: Option<DeployFailure>,
}

impl Ending {
    fn succeeded() -> Self {
        Ending {
            state: DeployState::Succeeded,
            failure: None,
        }
    }

    fn failed(code: FailureCode, message: impl Into<String>) -> Self {
        Ending::ended(DeployState::Failed, failure(code, message))
    }

    fn rolled_back(code: FailureCode, message: impl Into<String>) -> Self {
        Ending::ended(DeployState::RolledBack, failure(code, message))
    }

    /// An ending in `state` for a failure whose code was decided earlier
    /// (a rollback's reason, kept in the record as written).
    fn ended(state: DeployState, failure: DeployFailure) -> Self {
        Ending {
            state,
            failure: Some(failure),
        }
    }
}

fn failure(code: FailureCode, message: impl Into<String>) -> DeployFailure {
    DeployFailure {
        code: code.as_str().to_owned(),
        message: message.into(),
    }
}

/// Starts deploy `id` in the background; should its task panic, the deploy
/// still ends (`failed`, `internal`) instead of blocking the host for ever.
pub fn spawn(daemon: Arc<Daemon>, id: DeployId) {
    tokio::spawn(async move {
        let task = tokio::spawn(run(daemon.clone(), id.clone()));
        if let Err(error) = task.await {
            log::error!(deploy_id = id.as_str(); "deploy {id}: its task ended abnormally: {error}");
            let failure = failure(
                FailureCode::Internal,
                "the deploy's task ended abnormally; see the host's log",
            );
            let _ = daemon.finish(&id, DeployState::Failed, Some(failure));
        }
    });
}

/// Runs (or resumes) deploy `id` to its end.
pub async fn run(daemon: Arc<Daemon>, id: DeployId) {
    let ending = match drive(&daemon, &id).await {
        Ok(ending) => ending,
        Err(error) => {
            log::error!(deploy_id = id.as_str(); "deploy {id}: cannot record its progress: {error:#?}");
            Ending::failed(
                FailureCode::Internal,
                "deployd could not record the deploy's progress",
            )
        }
    };
    if let Some(failure) = &ending.failure {
        daemon.log(&id, &format!("deployd: {}", failure.message));
    }
    if let Err(error) = daemon.finish(&id, ending.state, ending.failure) {
        log::error!(deploy_id = id.as_str(); "deploy {id}: cannot record its end: {error:#?}");
    }
    if daemon.lifecycle.restart_requested() {
        log::info!("restarting to run the deployd of the new system");
        daemon.lifecycle.shutdown_token().cancel();
    }
}

async fn drive(daemon: &Daemon, id: &DeployId) -> Result<Ending, StateError> {
    let Some(deploy) = daemon.deploy(id.as_str()) else {
        return Ok(Ending::failed(
            FailureCode::Internal,
            "the deploy's record vanished",
        ));
    };
    let step = resume::next_step(&deploy);
    if step != Step::Start {
        daemon.log(id, &format!("deployd: restarted; {step}"));
    }
    match step {
        Step::Start => start(daemon, id, &deploy).await,
        Step::Interrupted { message } => Ok(Ending::failed(FailureCode::Interrupted, message)),
        Step::FinishRollbackSwitch { launch, why } => {
            let why = rollback_reason(&deploy, why);
            let outcome = match switch::wait(daemon, id, launch).await {
                // Planned but never started: it has not run, so run it now.
                SwitchOutcome::NeverStarted => match switch::start(daemon, id, launch).await {
                    Ok(()) => switch::wait(daemon, id, launch).await,
                    Err(error) => SwitchOutcome::Failed(error.to_string()),
                },
                // It found another switch holding the lock: run it again
                // once that one is done.
                SwitchOutcome::Exited(SwitchStatus::Locked) => {
                    let target = SwitchTarget {
                        system: &launch.system,
                        action: launch.action,
                    };
                    switch_back(daemon, id, target).await?
                }
                outcome => outcome,
            };
            Ok(conclude_rollback(&launch.system, outcome, why))
        }
        // The profile step again (setting a generation twice is harmless),
        // then the switch back.
        Step::RollBack { why } => roll_back(daemon, id, rollback_reason(&deploy, why)).await,
        Step::FinishSwitch { launch } => {
            // Never run it again: wait for the one that was started.
            let outcome = switch::wait(daemon, id, launch).await;
            conclude_switch(daemon, id, &deploy, outcome).await
        }
        Step::UndoProfile => {
            undo_profile(daemon, id, "deployd stopped before the switch ran").await
        }
        Step::AwaitConfirm => after_switch(daemon, id, &deploy, AfterSwitch::Confirm).await,
        Step::CheckHealth => after_switch(daemon, id, &deploy, AfterSwitch::Health).await,
    }
}

/// Whether the system asked for is already what `action` would produce.
fn already_active(daemon: &Daemon, deploy: &StoredDeploy) -> bool {
    let activation = &daemon.config().file.activation;
    let wanted = Some(deploy.record.store_path.to_string());
    // The host may run a specialisation of it: the one asked for, or, when
    // none is, any (a deploy keeps it).
    let system = Path::new(deploy.record.store_path.as_str());
    let running = read_link(&activation.current_system).is_some_and(|running| {
        let specialisation = specialisation_of(system, Path::new(&running));
        match deploy.progress.specialisation.as_deref() {
            Some(asked) => specialisation.as_deref() == Some(asked),
            None => Some(&running) == wanted.as_ref() || specialisation.is_some(),
        }
    });
    let in_profile = Profile::new(&activation.system_profile).current_system() == wanted;
    match deploy.record.action {
        Action::Switch => running && in_profile,
        // The profile's generation keeps it: nothing to prepare.
        Action::Boot | Action::Prepare => in_profile,
        Action::Test | Action::DryActivate => running,
    }
}

async fn start(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
) -> Result<Ending, StateError> {
    // A deploy accepted before a restart (or whose start a failed write
    // hid) is started only while its request is still valid.
    let expires_at = deploy
        .progress
        .expires_at
        .unwrap_or(deploy.record.issued_at + deployd_protocol::MAX_WINDOW_S);
    if crate::clock::now_ms() / 1000 > expires_at {
        return Ok(Ending::failed(
            FailureCode::Interrupted,
            "the request expired before deployd could start it; nothing was changed (send it again)",
        ));
    }
    prepared::release_for(daemon, id, deploy);
    if already_active(daemon, deploy) {
        daemon.log(id, "deployd: this system is already active; nothing to do");
        if deploy.record.action.activates() {
            // The same system, now from this (newer) request and revision.
            daemon.set_active(&deploy.record)?;
        }
        return Ok(Ending::succeeded());
    }
    let system = &deploy.record.store_path;
    let gc_root = gc_root(daemon, &prepared::fetch_root_name(deploy))?;
    if prepared::in_store(daemon, id, system, &gc_root).await {
        daemon.log(
            id,
            &format!(
                "deployd: {system} is already in the store (kept at {}); not fetching",
                gc_root.display()
            ),
        );
        return after_fetch(daemon, id, deploy).await;
    }
    daemon.enter(id, DeployState::Fetching)?;
    // Kept until Nix has realised the system from it; removed when dropped.
    let stage = fetch::fetch(daemon, id, system).await;
    let stage_url = stage.as_ref().map(fetch::Stage::url);
    let stage_url = stage_url.as_deref();
    let fetch = nix::realise(
        &daemon.config(),
        system,
        &gc_root,
        Freshness::ReuseFound,
        stage_url,
    );
    daemon.log(id, &format!("deployd: fetching with {}", fetch.display()));
    let mut fetched = command::run(&fetch, |line| daemon.log(id, line)).await;
    if let Err(CommandError::Failed { .. }) = fetched {
        // Nix may have used a stale answer of a cache's (a path since
        // re-signed, or gone): once more, asking the caches everything. Not
        // after a timeout, which would only take as long again.
        daemon.log(
            id,
            "deployd: the fetch failed; once more, asking the caches everything afresh",
        );
        let fetch = nix::realise(
            &daemon.config(),
            system,
            &gc_root,
            Freshness::Fresh,
            stage_url,
        );
        fetched = command::run(&fetch, |line| daemon.log(id, line)).await;
    }
    drop(stage);
    if let Err(error) = fetched {
        return Ok(Ending::failed(
            FailureCode::FetchFailed,
            format!("fetching {system} failed: {error}"),
        ));
    }
    after_fetch(daemon, id, deploy).await
}

/// The system is in the store: check it is a NixOS system for this
/// platform, then activate it, or, for a `prepare`, stop there.
async fn after_fetch(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
) -> Result<Ending, StateError> {
    let system = &deploy.record.store_path;
    let fetched = Path::new(system.as_str());
    if let Err(message) =
        check_nixos_system(fetched).and_then(|()| preflight::check_platform(fetched))
    {
        return Ok(Ending::failed(FailureCode::NotASystem, message));
    }
    if deploy.record.action == Action::Prepare {
        daemon.log(
            id,
            &format!("deployd: prepared {system}: it stays in the store, nothing switched"),
        );
        return Ok(Ending::succeeded());
    }
    daemon.enter(id, DeployState::Activating)?;
    activate(daemon, id, deploy).await
}

/// Where the steps after a successful switch begin (a restarted daemon
/// resumes at the step it was in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterSwitch {
    /// Wait for the confirmation, when one was asked for.
    Confirm,
    /// Run the health checks, when some are configured.
    Health,
}

/// The new system runs: wait for its confirmation, check its health, and
/// succeed, or roll back. Only `switch` and `test` activate now; `boot` and
/// `dry-activate` succeed at once.
async fn after_switch(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
    from: AfterSwitch,
) -> Result<Ending, StateError> {
    let activates_now = matches!(deploy.record.action, Action::Switch | Action::Test);
    if activates_now && from == AfterSwitch::Confirm {
        if let Some(window) = deploy.progress.confirm_within_s {
            if !confirmed_in_time(daemon, id, window).await? {
                return roll_back(
                    daemon,
                    id,
                    failure(
                        FailureCode::SwitchFailed,
                        format!("the deploy was not confirmed within {window} s"),
                    ),
                )
                .await;
            }
        }
    }
    if activates_now && health::configured(&daemon.config().file.health, daemon.systemd) {
        daemon.enter(id, DeployState::CheckingHealth)?;
        if let Err(report) = health::check(daemon, id).await {
            return roll_back(
                daemon,
                id,
                failure(
                    FailureCode::SwitchFailed,
                    format!("health checks failed: {report}"),
                ),
            )
            .await;
        }
    }
    record_success(daemon, id, deploy, Activated::Now).await;
    Ok(Ending::succeeded())
}

/// Waits in `awaiting_confirm` until a signed `confirm` arrives or the
/// window ends. The window's end is written down first, so a restarted
/// daemon waits only for what is left of it.
async fn confirmed_in_time(
    daemon: &Daemon,
    id: &DeployId,
    window_s: u64,
) -> Result<bool, StateError> {
    let Some(deploy) = daemon.deploy(id.as_str()) else {
        return Ok(false);
    };
    let deadline_ms = deploy
        .progress
        .confirm_deadline_ms
        .unwrap_or_else(|| crate::clock::now_ms() + window_s * 1000);
    // The window's end and the state are written together: a daemon that
    // stops in between cannot leave a window nobody may confirm in.
    if deploy.record.state != DeployState::AwaitingConfirm {
        daemon.enter_with(id, DeployState::AwaitingConfirm, |deploy| {
            deploy.progress.confirm_deadline_ms = Some(deadline_ms)
        })?;
        daemon.log(
            id,
            &format!("deployd: waiting {window_s} s for the deploy to be confirmed"),
        );
    }
    // Woken by the confirm itself, not by polling: the waiter is enabled
    // before each check, so a confirm taken in between is not missed.
    loop {
        let taken = daemon.lifecycle.confirmation_taken();
        tokio::pin!(taken);
        taken.as_mut().enable();
        if daemon
            .deploy(id.as_str())
            .is_some_and(|d| d.progress.confirmed)
        {
            daemon.log(id, "deployd: confirmed");
            return Ok(true);
        }
        let left_ms = deadline_ms.saturating_sub(crate::clock::now_ms());
        if left_ms == 0 {
            return Ok(false);
        }
        tokio::select! {
            () = &mut taken => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(left_ms)) => {}
        }
    }
}

/// When a successful deploy's system runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activated {
    /// As the action says: now for `switch` and `test`, at the next boot for
    /// `boot`.
    Now,
    /// At the next boot, whatever the action (its switch said the running
    /// system cannot take it now).
    AtNextBoot,
}

/// The new system is active (or will be, at the next boot): keep what a
/// success keeps. The switch has run, so nothing here may turn the deploy
/// into a failure; problems are logged.
async fn record_success(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
    activated: Activated,
) {
    let config = daemon.config();
    let action = deploy.record.action;
    let system = deploy.record.store_path.as_str();
    if action == Action::Test {
        let kept = match gc_root(daemon, "test") {
            Ok(root) => command::run(&nix::add_gc_root(&config, system, &root), |line| {
                daemon.log(id, line)
            })
            .await
            .map(|_| ())
            .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = kept {
            daemon.log(
                id,
                &format!("deployd: could not keep a GC root for the test system: {error}"),
            );
        }
    }
    if !action.activates() {
        return;
    }
    let activation = &config.file.activation;
    let runs_now = activated == Activated::Now && matches!(action, Action::Switch | Action::Test);
    if runs_now && runs_another_daemon(Path::new(system), &activation.unit, &config.path) {
        daemon.log(
            id,
            "deployd: the new system runs another deployd; restarting once this deploy is recorded",
        );
        daemon.lifecycle.request_restart();
    }
    // A system that does not run yet needs the reboot to run at all: one
    // deployed with `boot` (unless it is the running one), or one whose
    // switch said it takes effect at the next boot.
    let waits_for_boot = match activated {
        Activated::AtNextBoot => true,
        Activated::Now => {
            action == Action::Boot
                && read_link(&activation.current_system).as_deref() != Some(system)
        }
    };
    let reboot = waits_for_boot || reboot_required(Path::new(system), &activation.booted_system);
    let recorded = daemon
        .update(id, |deploy| deploy.record.reboot_required = reboot)
        .and_then(|deploy| daemon.set_active(&deploy.record));
    if let Err(error) = recorded {
        log::error!(deploy_id = id.as_str(); "deploy {id} succeeded but could not be recorded as active: {error:#?}");
    }
}

/// The path of a GC root deployd keeps (`fetched`, `test`, `prepared-...`).
fn gc_root(daemon: &Daemon, name: &str) -> Result<PathBuf, StateError> {
    let dir = daemon.config().file.state_dir.join("gc-roots");
    std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
    Ok(dir.join(name))
}
