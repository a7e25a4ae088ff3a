//! What is settled before the profile moves, so that a deploy NixOS would
//! refuse changes nothing: which system's switch runs (the host's
//! specialisation is kept), the switch lock (another switch holds it: wait),
//! and the new system's pre-switch checks (switch inhibitors among them: a
//! refusal ends the deploy `switch_inhibited`, the running system untouched).

use std::path::Path;
use std::time::Duration;

use deployd_command::{self as command, CommandError, Invocation};
use deployd_protocol::{Action, DeployId, FailureCode};
use tokio::time::Instant;

use super::switch::{lock_is_held, SwitchStatus};
use super::Ending;
use crate::daemon::Daemon;
use crate::system::{read_link, specialisation_of, Profile};

/// How often the switch lock is looked at while another switch holds it
/// (and how long to wait after a switch found it taken).
pub(super) const LOCK_POLL: Duration = Duration::from_millis(500);

/// The most of `bin/switch-to-configuration` read to learn whether it has
/// pre-switch checks (a makeWrapper wrapper is a few hundred bytes).
const WRAPPER_READ_BYTES: usize = 64 * 1024;

/// The system whose `switch-to-configuration` a deploy of `system` runs:
/// its specialisation `asked` for, or else the one of the same name when
/// the host runs one of its current system's specialisations now (as
/// `nixos-rebuild --specialisation` does), or `system` itself. A
/// specialisation asked for that `system` lacks refuses the deploy.
pub(super) fn switch_target(
    daemon: &Daemon,
    id: &DeployId,
    system: &str,
    asked: Option<&str>,
) -> Result<String, Ending> {
    let specialised = |name: &str| Path::new(system).join("specialisation").join(name);
    let has = |name: &str| {
        specialised(name)
            .join("bin/switch-to-configuration")
            .is_file()
    };
    if let Some(name) = asked {
        if !has(name) {
            return Err(Ending::failed(
                FailureCode::NotASystem,
                format!("{system} has no specialisation {name}; nothing was changed"),
            ));
        }
        daemon.log(
            id,
            &format!("deployd: switching to its specialisation {name}"),
        );
        return Ok(specialised(name).to_string_lossy().into_owned());
    }
    let config = daemon.config();
    let activation = &config.file.activation;
    let (Some(running), Some(parent)) = (
        read_link(&activation.current_system),
        Profile::new(&activation.system_profile).current_system(),
    ) else {
        return Ok(system.to_owned());
    };
    let Some(name) = specialisation_of(Path::new(&parent), Path::new(&running)) else {
        return Ok(system.to_owned());
    };
    if has(&name) {
        daemon.log(
            id,
            &format!("deployd: the host runs specialisation {name}; the new system's {name} is switched to"),
        );
        Ok(specialised(&name).to_string_lossy().into_owned())
    } else {
        daemon.log(
            id,
            &format!("deployd: the host runs specialisation {name}, which the new system does not have; its base system is switched to"),
        );
        Ok(system.to_owned())
    }
}

/// Waits until no other switch holds the switch lock, or fails the deploy
/// (nothing changed) at `deadline`.
pub(super) async fn wait_for_switch_lock(
    daemon: &Daemon,
    id: &DeployId,
    deadline: Instant,
) -> Result<(), Ending> {
    let lock = daemon.config().file.activation.switch_lock.clone();
    if !lock_is_held(&lock) {
        return Ok(());
    }
    daemon.log(
        id,
        &format!(
            "deployd: another switch-to-configuration holds {} (nixos-rebuild or system.autoUpgrade?); waiting for it",
            lock.display()
        ),
    );
    while lock_is_held(&lock) {
        if Instant::now() >= deadline {
            return Err(Ending::failed(
                SwitchStatus::Locked.error_code(),
                format!(
                    "another switch-to-configuration held {} until the switch timeout; nothing was changed",
                    lock.display()
                ),
            ));
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
    daemon.log(id, "deployd: the switch lock is free");
    Ok(())
}

/// What the new system's pre-switch checks said.
#[derive(Debug)]
pub(super) enum Checks {
    /// They passed, or the system has none, or the action skips them.
    Passed,
    /// Another switch took the lock first: wait for it again.
    Locked,
    /// They refused the switch: end the deploy so.
    Refused(Ending),
}

/// Runs `target`'s pre-switch checks (`switch-to-configuration check`)
/// before anything changes, for the actions whose switch runs them all
/// (`switch`, `test`); a system without them (older NixOS, or built
/// without switch-to-configuration-ng's wrapper) passes. `boot` and
/// `dry-activate` skip the inhibitor check in NixOS itself, and their own
/// switch runs the rest.
pub(super) async fn run_pre_switch_checks(
    daemon: &Daemon,
    id: &DeployId,
    target: &str,
    action: Action,
    deadline: Instant,
) -> Checks {
    if !matches!(action, Action::Switch | Action::Test) || !has_pre_switch_checks(Path::new(target))
    {
        return Checks::Passed;
    }
    let script = Path::new(target).join("bin/switch-to-configuration");
    let left = deadline.saturating_duration_since(Instant::now());
    let check = Invocation::new(&script, ["check"], left.max(Duration::from_secs(1)));
    daemon.log(id, "deployd: running the new system's pre-switch checks");
    let status = match command::run(&check, |line| daemon.log(id, line)).await {
        Ok(_) => {
            daemon.log(id, "deployd: pre-switch checks passed");
            return Checks::Passed;
        }
        Err(CommandError::Failed { status, .. }) => status.code(),
        Err(error) => {
            return Checks::Refused(Ending::failed(
                FailureCode::SwitchFailed,
                format!("the pre-switch checks could not run: {error}; nothing was changed"),
            ))
        }
    };
    match status.map(|code| SwitchStatus::from_code(code as u8)) {
        Some(SwitchStatus::Locked) => Checks::Locked,
        Some(SwitchStatus::NotActivated) => Checks::Refused(inhibited(target)),
        other => Checks::Refused(Ending::failed(
            FailureCode::SwitchFailed,
            format!(
                "the pre-switch checks ended with status {}; nothing was changed",
                other.map_or_else(
                    || "none (killed)".into(),
                    |status| status.code().to_string()
                )
            ),
        )),
    }
}

/// The ending of a deploy whose switch NixOS refused before it changed
/// anything.
pub(super) fn inhibited(target: &str) -> Ending {
    Ending::failed(
        FailureCode::SwitchInhibited,
        format!(
            "the pre-switch checks of {target} refused to switch to it (switch inhibitors: a change that needs a reboot, such as of systemd or D-Bus; see the log); the running system was not touched. Deploy it with --action boot and reboot"
        ),
    )
}

/// Whether `system`'s `bin/switch-to-configuration` runs pre-switch checks
/// and knows `check`: switch-to-configuration-ng's makeWrapper wrapper
/// exports `PRE_SWITCH_CHECK` (nixpkgs
/// `nixos/modules/system/activation/switchable-system.nix`); an older switch
/// has no `check` (it prints its usage and exits 1).
fn has_pre_switch_checks(system: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(system.join("bin/switch-to-configuration")) else {
        return false;
    };
    let mut head = Vec::new();
    if file
        .take(WRAPPER_READ_BYTES as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return false;
    }
    head.windows(b"PRE_SWITCH_CHECK".len())
        .any(|window| window == b"PRE_SWITCH_CHECK")
}

/// Why `system` cannot run on this host: it was built for another platform
/// (its `system` file, as NixOS's toplevel has it).
pub(super) fn check_platform(system: &Path) -> Result<(), String> {
    let Some(host) = host_platform() else {
        return Ok(());
    };
    let Ok(built_for) = std::fs::read_to_string(system.join("system")) else {
        return Ok(());
    };
    let built_for = built_for.trim();
    if built_for == host {
        Ok(())
    } else {
        Err(format!(
            "{} is a system for {built_for}, and this host is {host}; nothing was changed",
            system.display()
        ))
    }
}

/// This host's platform as Nix names it (`x86_64-linux`), where known.
fn host_platform() -> Option<String> {
    let cpu = match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => return None,
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
        other => other,
    };
    Some(format!("{cpu}-{}", std::env::consts::OS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A directory holding `files`, standing for a system.
    fn system_with(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(path, text).expect("write");
        }
        dir.to_owned()
    }

    #[test]
    fn a_system_for_another_platform_is_named_with_both() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = host_platform().expect("a known platform");
        let own = system_with(&dir.path().join("own"), &[("system", &format!("{host}\n"))]);
        assert_eq!(check_platform(&own), Ok(()));
        let foreign = system_with(&dir.path().join("foreign"), &[("system", "riscv32-none\n")]);
        let error = check_platform(&foreign).expect_err("another platform");
        assert!(
            error.contains("riscv32-none") && error.contains(&host),
            "{error}"
        );
        let unknown = system_with(&dir.path().join("unknown"), &[("nixos-version", "x")]);
        assert_eq!(
            check_platform(&unknown),
            Ok(()),
            "no system file: not known"
        );
    }

    #[test]
    fn pre_switch_checks_are_known_by_the_wrapper() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wrapped = system_with(
            &dir.path().join("ng"),
            &[(
                "bin/switch-to-configuration",
                "#! /nix/store/x-bash/bin/bash -e\nexport PRE_SWITCH_CHECK='/nix/store/y-pre-switch-checks'\nexec -a \"$0\" \"/nix/store/z/bin/.switch-to-configuration-wrapped\" \"$@\"\n",
            )],
        );
        assert!(has_pre_switch_checks(&wrapped));
        let older = system_with(
            &dir.path().join("perl"),
            &[(
                "bin/switch-to-configuration",
                "#! /nix/store/p-perl/bin/perl\n",
            )],
        );
        assert!(!has_pre_switch_checks(&older));
        assert!(!has_pre_switch_checks(&dir.path().join("none")));
    }
}
