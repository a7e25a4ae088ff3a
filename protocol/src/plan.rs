//! `GET /v1/plan?store_path=...`: what a host says about a system it was
//! not sent, without changing anything (`push plan`). The host answers what
//! only it knows (the paths it lacks, its running system's closure, boot
//! links and switch inhibitors); the sender compares that with the system it
//! built and shows the fleet side by side.
//!
//! The rule of when a reboot is needed ([`BootLinks::need_reboot_from`]) and
//! the split of a store path's name into package and version
//! ([`parse_name`]) live here, so the daemon and `push` read them alike.

use crate::names::HostName;
use crate::store_path::StorePath;

/// The path of the plan endpoint (its one query parameter is `store_path`).
pub const PLAN_PATH: &str = "/v1/plan";

/// The largest switch-inhibitors file a host reports, in bytes (NixOS's is a
/// few lines of JSON).
pub const MAX_INHIBITORS_BYTES: usize = 64 * 1024;

/// `GET /v1/plan?store_path=...`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanResponse {
    /// The host's name.
    pub hostname: HostName,
    /// The system asked about.
    pub store_path: StorePath,
    /// What fetching it would download.
    pub missing: MissingPaths,
    /// What the host runs now (`/run/current-system`), if anything.
    pub running: Option<RunningSystem>,
    /// The booted system's boot links (`/run/booted-system`): a new system
    /// whose links differ needs a reboot.
    pub booted_links: Option<BootLinks>,
}

/// The store paths of a system's closure that a host lacks, and what the
/// caches say they weigh (from their narinfos: `FileSize` and `NarSize`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingPaths {
    /// The paths the host would fetch, sorted.
    pub paths: Vec<StorePath>,
    /// Their compressed size in the caches, in bytes (as Nix sums it, to
    /// within 0.01 MiB).
    pub download_bytes: u64,
    /// Their size once unpacked, in bytes (same precision).
    pub unpacked_bytes: u64,
    /// Paths that no configured cache has (a fetch would fail on them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<StorePath>,
}

/// The system a host runs, as a plan compares it with a new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningSystem {
    /// `/run/current-system`.
    pub store_path: StorePath,
    /// Every path of its closure with its unpacked size, sorted by path.
    pub closure: Vec<ClosurePath>,
    /// Its `switch-inhibitors` file as written, when it has one.
    pub switch_inhibitors: Option<String>,
}

/// One store path of a closure, with its unpacked (NAR) size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosurePath {
    /// The path.
    pub path: StorePath,
    /// Its NAR size, in bytes.
    pub nar_size: u64,
}

/// Where a system's `kernel`, `initrd` and `kernel-modules` links point
/// (each `None` when the system has no such link).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootLinks {
    /// `kernel`.
    pub kernel: Option<String>,
    /// `initrd`.
    pub initrd: Option<String>,
    /// `kernel-modules`.
    pub kernel_modules: Option<String>,
}

impl BootLinks {
    /// The names of the links, in a system's top level.
    pub const NAMES: [&'static str; 3] = ["kernel", "initrd", "kernel-modules"];

    /// The links read by `read_link` (given a link's name in the system).
    pub fn read(read_link: impl Fn(&str) -> Option<String>) -> BootLinks {
        BootLinks {
            kernel: read_link("kernel"),
            initrd: read_link("initrd"),
            kernel_modules: read_link("kernel-modules"),
        }
    }

    /// Whether running a system with these links fully needs a reboot from
    /// a booted system with `booted`'s: its kernel, initrd or kernel
    /// modules differ.
    pub fn need_reboot_from(&self, booted: &BootLinks) -> bool {
        self != booted
    }

    /// The names of the links that differ from `other`'s.
    pub fn differences(&self, other: &BootLinks) -> Vec<&'static str> {
        let pairs = [
            (&self.kernel, &other.kernel),
            (&self.initrd, &other.initrd),
            (&self.kernel_modules, &other.kernel_modules),
        ];
        Self::NAMES
            .iter()
            .zip(pairs)
            .filter(|(_, (a, b))| a != b)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// A store path name's package and version, split as Nix's
/// `builtins.parseDrvName` splits them (Nix `src/libstore/names.cc`,
/// `DrvName::DrvName`): at the first `-` followed by a character that is
/// not a letter; no such dash, no version (`""`).
/// `hello-2.12.1` → (`hello`, `2.12.1`); `nixos-system-x-23.11` →
/// (`nixos-system-x`, `23.11`); `etc` → (`etc`, `""`).
pub fn parse_name(name: &str) -> (&str, &str) {
    let bytes = name.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'-'
            && bytes
                .get(index + 1)
                .is_some_and(|next| !next.is_ascii_alphabetic())
        {
            return (&name[..index], &name[index + 1..]);
        }
    }
    (name, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_parse_drv_name_does() {
        assert_eq!(parse_name("hello-2.12.1"), ("hello", "2.12.1"));
        assert_eq!(
            parse_name("nixos-system-x-23.11"),
            ("nixos-system-x", "23.11")
        );
        assert_eq!(parse_name("etc"), ("etc", ""));
        assert_eq!(
            parse_name("linux-6.1.55-modules"),
            ("linux", "6.1.55-modules")
        );
        assert_eq!(
            parse_name("unit-script-foo-start"),
            ("unit-script-foo-start", "")
        );
        assert_eq!(
            parse_name("python3.11-requests-2.31.0"),
            ("python3.11-requests", "2.31.0")
        );
        // A dash at the very end splits nothing.
        assert_eq!(parse_name("odd-"), ("odd-", ""));
        assert_eq!(parse_name("x-_y"), ("x", "_y"));
    }

    #[test]
    fn a_reboot_is_needed_when_any_boot_link_differs() {
        let booted = BootLinks {
            kernel: Some("/nix/store/k1".into()),
            initrd: Some("/nix/store/i".into()),
            kernel_modules: Some("/nix/store/m".into()),
        };
        assert!(!booted.clone().need_reboot_from(&booted));
        let new = BootLinks {
            kernel: Some("/nix/store/k2".into()),
            ..booted.clone()
        };
        assert!(new.need_reboot_from(&booted));
        assert_eq!(new.differences(&booted), ["kernel"]);
    }

    #[test]
    fn an_answer_round_trips_and_refuses_unknown_fields() {
        let answer = PlanResponse {
            hostname: "sambirano".parse().expect("host"),
            store_path: "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
                .parse()
                .expect("path"),
            missing: MissingPaths::default(),
            running: None,
            booted_links: Some(BootLinks::default()),
        };
        let text = serde_json::to_string(&answer).expect("json");
        assert_eq!(
            serde_json::from_str::<PlanResponse>(&text).expect("parse"),
            answer
        );
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<PlanResponse>(&extra).is_err());
    }
}
