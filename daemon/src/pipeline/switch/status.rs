//! What `switch-to-configuration`'s exit status means. deployd reads it as
//! NixOS's switch-to-configuration-ng sets it (nixpkgs,
//! `pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs`, which keeps
//! the statuses of the Perl script it replaced), so that every status has a
//! name in the deploy's record and its own consequence:
//!
//! - 0: switched.
//! - 1: stopped before activating anything: a usage error, failed pre-switch
//!   checks ("Pre-switch checks failed", switch inhibitors among them), or
//!   a boot loader that could not be installed.
//! - 2: the activation script failed; the rest of the switch still ran.
//! - 4: switched, but units failed to start, restart or reload, or were
//!   failed once the switch's jobs ended.
//! - 100: the new system's init interface differs from the running one's: it
//!   takes effect at the next boot (the boot loader already points at it).
//! - any other: an error whose status is the errno of the failed call (Perl's
//!   `die`); 11 (`EWOULDBLOCK`) is the switch lock held by another switch
//!   ("Could not acquire lock").

use deployd_protocol::FailureCode;

/// The switch lock's errno status: `EWOULDBLOCK` (`EAGAIN`) on Linux.
const LOCKED: u8 = 11;

/// The line switch-to-configuration prints when its pre-switch checks fail.
pub const PRE_SWITCH_CHECKS_FAILED: &str = "Pre-switch checks failed";
/// The line it prints when the activation script failed (it goes on, and
/// exits 2, or 4 when units failed as well).
pub const ACTIVATION_FAILED: &str = "Failed to run activate script";

/// A switch's exit status, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchStatus {
    /// 0.
    Switched,
    /// 1: nothing was activated.
    NotActivated,
    /// 2: the activation script failed.
    ActivationFailed,
    /// 4: switched, with failed units.
    UnitsFailed,
    /// 11: another switch holds the lock; nothing was done.
    Locked,
    /// 100: takes effect at the next boot.
    NeedsReboot,
    /// Any other status (an errno).
    Other(u8),
}

impl SwitchStatus {
    /// The status `code` names.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => SwitchStatus::Switched,
            1 => SwitchStatus::NotActivated,
            2 => SwitchStatus::ActivationFailed,
            4 => SwitchStatus::UnitsFailed,
            LOCKED => SwitchStatus::Locked,
            100 => SwitchStatus::NeedsReboot,
            other => SwitchStatus::Other(other),
        }
    }

    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            SwitchStatus::Switched => 0,
            SwitchStatus::NotActivated => 1,
            SwitchStatus::ActivationFailed => 2,
            SwitchStatus::UnitsFailed => 4,
            SwitchStatus::Locked => LOCKED,
            SwitchStatus::NeedsReboot => 100,
            SwitchStatus::Other(code) => code,
        }
    }

    /// The error code a deploy that ends on this status carries.
    pub fn error_code(self) -> FailureCode {
        match self {
            SwitchStatus::Switched | SwitchStatus::NotActivated | SwitchStatus::Other(_) => {
                FailureCode::SwitchFailed
            }
            SwitchStatus::ActivationFailed => FailureCode::ActivationFailed,
            SwitchStatus::UnitsFailed => FailureCode::UnitsFailed,
            SwitchStatus::Locked => FailureCode::SwitchLocked,
            SwitchStatus::NeedsReboot => FailureCode::InitInterfaceChanged,
        }
    }

    /// What the status says, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            SwitchStatus::Switched => "switched",
            SwitchStatus::NotActivated => {
                "it stopped before activating anything (a usage error, failed pre-switch checks, or the boot loader could not be installed)"
            }
            SwitchStatus::ActivationFailed => "the activation script failed",
            SwitchStatus::UnitsFailed => "switched, but units failed",
            SwitchStatus::Locked => {
                "another switch-to-configuration held the switch lock (Could not acquire lock)"
            }
            SwitchStatus::NeedsReboot => {
                "the new system's init interface differs from the running one's: it takes effect at the next boot"
            }
            SwitchStatus::Other(_) => "an error (the status is the errno of a failed system call)",
        }
    }
}

impl std::fmt::Display for SwitchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "switch-to-configuration exited with status {}: {}",
            self.code(),
            self.meaning()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_the_real_switch_has_a_name() {
        for (code, status, error_code) in [
            (1, SwitchStatus::NotActivated, "switch_failed"),
            (2, SwitchStatus::ActivationFailed, "activation_failed"),
            (4, SwitchStatus::UnitsFailed, "units_failed"),
            (11, SwitchStatus::Locked, "switch_locked"),
            (100, SwitchStatus::NeedsReboot, "init_interface_changed"),
            (13, SwitchStatus::Other(13), "switch_failed"),
        ] {
            assert_eq!(SwitchStatus::from_code(code), status);
            assert_eq!(status.code(), code);
            assert_eq!(status.error_code().as_str(), error_code);
        }
        assert_eq!(SwitchStatus::from_code(0), SwitchStatus::Switched);
        assert_eq!(
            SwitchStatus::ActivationFailed.to_string(),
            "switch-to-configuration exited with status 2: the activation script failed"
        );
    }
}
