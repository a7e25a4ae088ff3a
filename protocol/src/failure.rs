//! `FailureCode`: the codes a deploy that did not succeed carries in its
//! record (`error.code`), as opposed to the HTTP answers' [`ErrorCode`]s.
//! The record keeps the code as a string ([`DeployFailure::code`]), so a
//! client reads a code newer than itself; the daemon only ever writes
//! these.
//!
//! [`ErrorCode`]: crate::ErrorCode
//! [`DeployFailure::code`]: crate::api::DeployFailure::code

use std::fmt;

/// Why a deploy ended `failed` or `rolled_back`: the `code` of its
/// record's `error`, beside a sentence for people (`message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// Fetching the system's closure from the caches failed; nothing was changed.
    FetchFailed,
    /// The store path is not a NixOS system for this machine (no
    /// `bin/switch-to-configuration`, another platform, or no such
    /// specialisation); nothing was changed.
    NotASystem,
    /// Setting the system profile to the new system failed.
    ProfileFailed,
    /// The switch failed, the health checks failed or the deploy was not
    /// confirmed in time: the previous system is active again
    /// (`rolled_back`), or there was none to go back to (`failed`).
    SwitchFailed,
    /// NixOS's pre-switch checks refused the switch (switch inhibitors: a
    /// change that needs a reboot); the running system was not touched.
    SwitchInhibited,
    /// The new system's activation script failed (switch-to-configuration
    /// status 2, or status 4 hiding it).
    ActivationFailed,
    /// A dry activation reported units that would fail
    /// (switch-to-configuration status 4).
    UnitsFailed,
    /// Another switch-to-configuration held the switch lock until the
    /// switch timeout (status 11).
    SwitchLocked,
    /// The new system's init interface differs from the running one's
    /// (status 100): it takes effect only after a reboot; deploy it with
    /// `--action boot`.
    InitInterfaceChanged,
    /// Rolling back failed too: the machine may be between the two systems.
    RollbackFailed,
    /// deployd stopped in the middle of the deploy (or the request expired
    /// before it could start); what it had changed was undone.
    Interrupted,
    /// deployd could not record the deploy's progress or its task ended
    /// abnormally; the host's log has the details.
    Internal,
}

impl FailureCode {
    /// The code as records carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::FetchFailed => "fetch_failed",
            FailureCode::NotASystem => "not_a_system",
            FailureCode::ProfileFailed => "profile_failed",
            FailureCode::SwitchFailed => "switch_failed",
            FailureCode::SwitchInhibited => "switch_inhibited",
            FailureCode::ActivationFailed => "activation_failed",
            FailureCode::UnitsFailed => "units_failed",
            FailureCode::SwitchLocked => "switch_locked",
            FailureCode::InitInterfaceChanged => "init_interface_changed",
            FailureCode::RollbackFailed => "rollback_failed",
            FailureCode::Interrupted => "interrupted",
            FailureCode::Internal => "internal",
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_is_serdes() {
        for code in [
            FailureCode::FetchFailed,
            FailureCode::NotASystem,
            FailureCode::InitInterfaceChanged,
            FailureCode::Internal,
        ] {
            let json = serde_json::to_string(&code).expect("serialised");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
