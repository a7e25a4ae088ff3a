//! The small closed vocabularies of the wire: message kinds, switch actions
//! and the permissions a trusted key can hold.

use std::fmt;

/// What a signed message authorises; each endpoint accepts one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Start a deploy (`POST /v1/deploy`).
    Deploy,
    /// Confirm a deploy waiting for it (`POST /v1/deploys/{id}/confirm`).
    Confirm,
    /// Return to the previous generation (`POST /v1/rollback`).
    Rollback,
    /// One read request, when reads require a signature.
    Read,
}

impl Kind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Confirm => "confirm",
            Kind::Rollback => "rollback",
            Kind::Read => "read",
        }
    }

    /// The permission a key needs to sign this kind: confirming a deploy is
    /// part of deploying.
    pub fn permission(self) -> Permission {
        match self {
            Kind::Deploy | Kind::Confirm => Permission::Deploy,
            Kind::Rollback => Permission::Rollback,
            Kind::Read => Permission::Read,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deploy does with its system: the argument given to
/// `switch-to-configuration`, or `prepare` (fetch and keep it, switch
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Make it the boot default and activate it now.
    Switch,
    /// Make it the boot default, activate on next boot.
    Boot,
    /// Activate now, leave the boot default alone.
    Test,
    /// Print what activation would do, change nothing.
    DryActivate,
    /// Fetch the closure and keep it (a GC root), switch nothing: a later
    /// deploy of the same system switches without fetching.
    Prepare,
}

impl Action {
    /// The wire name, also `switch-to-configuration`'s argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switch => "switch",
            Action::Boot => "boot",
            Action::Test => "test",
            Action::DryActivate => "dry-activate",
            Action::Prepare => "prepare",
        }
    }

    /// Whether this action sets the system profile (a new generation).
    pub fn sets_profile(self) -> bool {
        matches!(self, Action::Switch | Action::Boot)
    }

    /// Whether a success makes the system the host's active one (now or at
    /// the next boot): not `dry-activate` nor `prepare`, which change
    /// neither the running system nor the profile.
    pub fn activates(self) -> bool {
        matches!(self, Action::Switch | Action::Boot | Action::Test)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = crate::NameError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "switch" => Ok(Action::Switch),
            "boot" => Ok(Action::Boot),
            "test" => Ok(Action::Test),
            "dry-activate" => Ok(Action::DryActivate),
            "prepare" => Ok(Action::Prepare),
            _ => Err(crate::NameError::new(
                "action",
                value,
                "expected switch, boot, test, dry-activate or prepare",
            )),
        }
    }
}

/// Something a trusted key may do (`may = [...]` in the daemon's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Sign `deploy` and `confirm` messages.
    Deploy,
    /// Sign `rollback` messages.
    Rollback,
    /// Deploy a request older than the active one (with `allow_downgrade`).
    Downgrade,
    /// Sign `read` messages.
    Read,
}

impl Permission {
    const fn bit(self) -> u8 {
        match self {
            Permission::Deploy => 1,
            Permission::Rollback => 2,
            Permission::Downgrade => 4,
            Permission::Read => 8,
        }
    }
}

/// A set of permissions; the default is all of them, as the book's wire format says (docs/src/design/wire-format.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// Every permission.
    pub const ALL: Permissions = Permissions(1 | 2 | 4 | 8);
    /// No permission at all.
    pub const NONE: Permissions = Permissions(0);

    /// Whether the set holds `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// The set with `permission` added.
    pub fn with(self, permission: Permission) -> Permissions {
        Permissions(self.0 | permission.bit())
    }
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::ALL
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(items: I) -> Self {
        items.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

const EVERY_PERMISSION: [Permission; 4] = [
    Permission::Deploy,
    Permission::Rollback,
    Permission::Downgrade,
    Permission::Read,
];

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = EVERY_PERMISSION.iter().filter(|p| self.allows(**p));
        f.debug_set().entries(held).finish()
    }
}

impl serde::Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(EVERY_PERMISSION.iter().filter(|p| self.allows(**p)))
    }
}

impl<'de> serde::Deserialize<'de> for Permissions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<Permission>::deserialize(deserializer)?;
        Ok(list.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_needs_deploy_permission() {
        assert_eq!(Kind::Confirm.permission(), Permission::Deploy);
        let read_only: Permissions = [Permission::Read].into_iter().collect();
        assert!(!read_only.allows(Kind::Confirm.permission()));
        assert!(read_only.allows(Kind::Read.permission()));
    }

    #[test]
    fn permissions_serde_round_trip() {
        let set: Permissions = serde_json::from_str(r#"["deploy","downgrade"]"#).expect("parse");
        assert!(set.allows(Permission::Deploy) && set.allows(Permission::Downgrade));
        assert!(!set.allows(Permission::Read));
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"["deploy","downgrade"]"#
        );
        assert!(serde_json::from_str::<Permissions>(r#"["root"]"#).is_err());
    }

    #[test]
    fn actions_parse_from_their_wire_names() {
        for action in [
            Action::Switch,
            Action::Boot,
            Action::Test,
            Action::DryActivate,
            Action::Prepare,
        ] {
            assert_eq!(action.as_str().parse::<Action>().expect("parse"), action);
            let json = serde_json::to_string(&action).expect("json");
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        assert!("reboot".parse::<Action>().is_err());
    }

    #[test]
    fn only_switch_boot_and_test_make_a_system_active() {
        assert!(Action::Switch.activates() && Action::Boot.activates() && Action::Test.activates());
        assert!(!Action::DryActivate.activates() && !Action::Prepare.activates());
        assert!(!Action::Prepare.sets_profile());
    }

    #[test]
    fn preparing_takes_the_deploy_permission() {
        // A prepare is a `deploy` message: a read-only key cannot sign one.
        let read_only: Permissions = [Permission::Read].into_iter().collect();
        assert!(!read_only.allows(Kind::Deploy.permission()));
        let deployer: Permissions = [Permission::Deploy].into_iter().collect();
        assert!(deployer.allows(Kind::Deploy.permission()));
    }
}
