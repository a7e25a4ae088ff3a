//! A deploy, step by step: fetch → check it is a NixOS system → set the
//! profile → switch → succeeded; or roll back when the switch fails. Each
//! step that changes the machine is written into the deploy's progress
//! before it is taken, so [`run`] can also finish a deploy that a previous
//! daemon left unfinished: it never activates a system twice, and it ends
//! every deploy in a truthful state.

pub mod health;
mod nix;
mod resume;
mod rollback;
mod switch;

pub use switch::{SwitchOutcome, SwitchTarget};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployd_protocol::api::{DeployFailure, DeployState};
use deployd_protocol::{Action, DeployId};

use crate::daemon::Daemon;
use crate::state::{StateError, StoredDeploy, SwitchKind};
use crate::system::{check_nixos_system, read_link, reboot_required, runs_another_daemon, Profile};
use deployd_command as command;
use deployd_command::CommandError;
use nix::Freshness;
use resume::Step;
use rollback::{conclude_rollback, roll_back, undo_profile};

/// How a deploy ends.
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

    fn failed(code: &str, message: impl Into<String>) -> Self {
        Ending {
            state: DeployState::Failed,
            failure: Some(failure(code, message)),
        }
    }

    fn rolled_back(code: &str, message: impl Into<String>) -> Self {
        Ending {
            state: DeployState::RolledBack,
            failure: Some(failure(code, message)),
        }
    }
}

fn failure(code: &str, message: impl Into<String>) -> DeployFailure {
    DeployFailure {
        code: code.to_owned(),
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
                "internal",
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
            Ending::failed("internal", "deployd could not record the deploy's progress")
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
        return Ok(Ending::failed("internal", "the deploy's record vanished"));
    };
    let step = resume::next_step(&deploy);
    if step != Step::Start {
        daemon.log(id, &format!("deployd: restarted; {step}"));
    }
    match step {
        Step::Start => start(daemon, id, &deploy).await,
        Step::Interrupted { message } => Ok(Ending::failed("interrupted", message)),
        Step::FinishRollbackSwitch { launch, why } => {
            let outcome = match switch::wait(daemon, id, launch).await {
                // Planned but never started: it has not run, so run it now.
                SwitchOutcome::NeverStarted => match switch::start(daemon, id, launch).await {
                    Ok(()) => switch::wait(daemon, id, launch).await,
                    Err(error) => SwitchOutcome::Failed(error.to_string()),
                },
                outcome => outcome,
            };
            Ok(conclude_rollback(&launch.system, outcome, why.to_owned()))
        }
        // The profile step again (setting a generation twice is harmless),
        // then the switch back.
        Step::RollBack { why } => roll_back(daemon, id, why.to_owned()).await,
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
    let activation = &daemon.config.file.activation;
    let wanted = Some(deploy.record.store_path.to_string());
    let running = read_link(&activation.current_system) == wanted;
    let in_profile = Profile::new(&activation.system_profile).current_system() == wanted;
    match deploy.record.action {
        Action::Switch => running && in_profile,
        Action::Boot => in_profile,
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
            "interrupted",
            "the request expired before deployd could start it; nothing was changed (send it again)",
        ));
    }
    if already_active(daemon, deploy) {
        daemon.log(id, "deployd: this system is already active; nothing to do");
        if deploy.record.action != Action::DryActivate {
            // The same system, now from this (newer) request and revision.
            daemon.set_active(&deploy.record)?;
        }
        return Ok(Ending::succeeded());
    }
    daemon.enter(id, DeployState::Fetching)?;
    let system = &deploy.record.store_path;
    let gc_root = gc_root(daemon, "fetched")?;
    let fetch = nix::realise(&daemon.config, system, &gc_root, Freshness::ReuseFound);
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
        let fetch = nix::realise(&daemon.config, system, &gc_root, Freshness::Fresh);
        fetched = command::run(&fetch, |line| daemon.log(id, line)).await;
    }
    if let Err(error) = fetched {
        return Ok(Ending::failed(
            "fetch_failed",
            format!("fetching {system} failed: {error}"),
        ));
    }
    if let Err(message) = check_nixos_system(Path::new(system.as_str())) {
        return Ok(Ending::failed("not_a_system", message));
    }
    daemon.enter(id, DeployState::Activating)?;
    activate(daemon, id, deploy).await
}

async fn activate(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
) -> Result<Ending, StateError> {
    let activation = &daemon.config.file.activation;
    let profile = Profile::new(&activation.system_profile);
    let action = deploy.record.action;
    let previous_system = match action {
        Action::Boot => profile.current_system(),
        _ => read_link(&activation.current_system).or_else(|| profile.current_system()),
    };
    let previous_generation = profile.current_generation();
    let system = deploy.record.store_path.clone();
    daemon.update(id, |deploy| {
        deploy.record.previous_system = previous_system.clone();
        deploy.progress.previous_generation = previous_generation;
        deploy.progress.profile_change_started = action.sets_profile();
    })?;
    if action.sets_profile() {
        // A requested rollback moves the profile back; a deploy adds a generation.
        let change = match deploy.progress.rollback_to_generation {
            Some(number) => nix::switch_generation(&daemon.config, number),
            None => nix::set_profile(&daemon.config, &system),
        };
        if let Err(error) = command::run(&change, |line| daemon.log(id, line)).await {
            // `nix-env` replaces the profile link atomically, or not at all.
            return Ok(Ending::failed(
                "profile_failed",
                format!("setting the system profile failed: {error}"),
            ));
        }
    }
    health::remember_failed_units(daemon, id, action).await?;
    let target = SwitchTarget {
        system: system.as_str(),
        action,
    };
    let outcome = run_switch(daemon, id, SwitchKind::Forward, target).await?;
    conclude_switch(daemon, id, deploy, outcome).await
}

/// Plans a switch, writes the plan into the record, starts it, waits.
async fn run_switch(
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

/// After the new system's switch ended: succeed, or roll back.
async fn conclude_switch(
    daemon: &Daemon,
    id: &DeployId,
    deploy: &StoredDeploy,
    outcome: SwitchOutcome,
) -> Result<Ending, StateError> {
    let action = deploy.record.action;
    match outcome {
        SwitchOutcome::NeverStarted => undo_profile(daemon, id, "the switch never started").await,
        SwitchOutcome::Failed(why) if action == Action::DryActivate => Ok(Ending::failed(
            "switch_failed",
            format!("dry-activate failed: {why}"),
        )),
        SwitchOutcome::Failed(why) => roll_back(daemon, id, why).await,
        SwitchOutcome::Succeeded => after_switch(daemon, id, deploy, AfterSwitch::Confirm).await,
    }
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
                    format!("the deploy was not confirmed within {window} s"),
                )
                .await;
            }
        }
    }
    if activates_now && health::configured(&daemon.config.file.health, daemon.systemd) {
        daemon.enter(id, DeployState::CheckingHealth)?;
        if let Err(report) = health::check(daemon, id).await {
            return roll_back(daemon, id, format!("health checks failed: {report}")).await;
        }
    }
    record_success(daemon, id, deploy).await;
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

/// The new system is active: keep what a success keeps. The switch has run,
/// so nothing here may turn the deploy into a failure; problems are logged.
async fn record_success(daemon: &Daemon, id: &DeployId, deploy: &StoredDeploy) {
    let action = deploy.record.action;
    let system = deploy.record.store_path.as_str();
    if action == Action::Test {
        let kept = match gc_root(daemon, "test") {
            Ok(root) => command::run(&nix::add_gc_root(&daemon.config, system, &root), |line| {
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
    if action == Action::DryActivate {
        return;
    }
    let activation = &daemon.config.file.activation;
    if matches!(action, Action::Switch | Action::Test)
        && runs_another_daemon(Path::new(system), &activation.unit, &daemon.config.path)
    {
        daemon.log(
            id,
            "deployd: the new system runs another deployd; restarting once this deploy is recorded",
        );
        daemon.lifecycle.request_restart();
    }
    let booted = &daemon.config.file.activation.booted_system;
    let reboot = reboot_required(Path::new(system), booted);
    let recorded = daemon
        .update(id, |deploy| deploy.record.reboot_required = reboot)
        .and_then(|deploy| daemon.set_active(&deploy.record));
    if let Err(error) = recorded {
        log::error!(deploy_id = id.as_str(); "deploy {id} succeeded but could not be recorded as active: {error:#?}");
    }
}

/// The path of a GC root deployd keeps (`fetched`, `test`).
fn gc_root(daemon: &Daemon, name: &str) -> Result<PathBuf, StateError> {
    let dir = daemon.config.file.state_dir.join("gc-roots");
    std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
    Ok(dir.join(name))
}
