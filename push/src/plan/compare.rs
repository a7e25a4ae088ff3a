//! A host's plan, as `push plan` shows it: what the host said (the paths it
//! lacks, what it runs) beside the system push built. The closure diff is
//! nvd's: packages by name (Nix's `parseDrvName` split, see
//! [`parse_name`]), changed when their versions differ, added or removed
//! when only one side has them, and the closures' total size.

use std::collections::{BTreeMap, BTreeSet};

use deployd_protocol::plan::{parse_name, ClosurePath, MissingPaths, PlanResponse};
use deployd_protocol::StorePath;

use super::built::BuiltSystem;

/// What deploying the new system would do on one host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Planned {
    /// What it runs now.
    pub running: Option<StorePath>,
    /// What it would fetch.
    pub fetch: MissingPaths,
    /// Packages whose versions change.
    pub changed: Vec<Changed>,
    /// Packages only the new system has, with their versions.
    pub added: Vec<Package>,
    /// Packages only the running system has.
    pub removed: Vec<Package>,
    /// The running system's closure size, in bytes (unpacked).
    pub closure_bytes_before: u64,
    /// The new system's.
    pub closure_bytes_after: u64,
    /// The boot links (`kernel`, `initrd`, `kernel-modules`) that differ
    /// from the booted system's: any, and a reboot is needed.
    pub reboot_for: Vec<&'static str>,
    /// The switch inhibitors that change: any, and a `switch` is refused
    /// (`--action boot` and a reboot instead).
    pub inhibitors_changed: Vec<InhibitorChange>,
}

impl Planned {
    /// Whether the new system needs a reboot to run fully.
    pub fn reboot(&self) -> bool {
        !self.reboot_for.is_empty()
    }

    /// Whether a `switch` to it would be refused.
    pub fn switch_refused(&self) -> bool {
        !self.inhibitors_changed.is_empty()
    }
}

/// A package whose versions differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// Its name.
    pub name: String,
    /// Its versions in the running system.
    pub old: Vec<String>,
    /// Its versions in the new one.
    pub new: Vec<String>,
}

/// A package on one side only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its versions (`""`: the path's name has none).
    pub versions: Vec<String>,
}

/// A switch inhibitor whose value changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InhibitorChange {
    /// Its name (`*` when a file could not be read as names and values).
    pub name: String,
    /// The running system's value.
    pub old: String,
    /// The new system's.
    pub new: String,
}

/// The plan of `built` on the host that answered `answer`.
pub fn compare(answer: &PlanResponse, built: &BuiltSystem) -> Planned {
    let running = answer.running.as_ref();
    let old = running.map_or(&[][..], |running| running.closure.as_slice());
    let (changed, added, removed) = package_diff(old, &built.closure);
    let reboot_for = match &answer.booted_links {
        Some(booted) => built.boot_links.differences(booted),
        None => Vec::new(),
    };
    let inhibitors_changed = match (
        running.and_then(|running| running.switch_inhibitors.as_deref()),
        built.switch_inhibitors.as_deref(),
    ) {
        (Some(old), Some(new)) => inhibitor_changes(old, new),
        _ => Vec::new(),
    };
    Planned {
        running: running.map(|running| running.store_path.clone()),
        fetch: answer.missing.clone(),
        changed,
        added,
        removed,
        closure_bytes_before: old.iter().map(|path| path.nar_size).sum(),
        closure_bytes_after: built.closure.iter().map(|path| path.nar_size).sum(),
        reboot_for,
        inhibitors_changed,
    }
}

/// Each package name's versions in `closure`.
fn packages(closure: &[ClosurePath]) -> BTreeMap<String, BTreeSet<String>> {
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in closure {
        let (name, version) = parse_name(path.path.name());
        packages
            .entry(name.to_owned())
            .or_default()
            .insert(version.to_owned());
    }
    packages
}

/// Changed, added and removed packages from `old` to `new`.
fn package_diff(
    old: &[ClosurePath],
    new: &[ClosurePath],
) -> (Vec<Changed>, Vec<Package>, Vec<Package>) {
    let (old, new) = (packages(old), packages(new));
    let list = |versions: &BTreeSet<String>| versions.iter().cloned().collect::<Vec<_>>();
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (name, versions) in &new {
        match old.get(name) {
            Some(before) if before != versions => changed.push(Changed {
                name: name.clone(),
                old: list(before),
                new: list(versions),
            }),
            Some(_) => {}
            None => added.push(Package {
                name: name.clone(),
                versions: list(versions),
            }),
        }
    }
    let removed = old
        .iter()
        .filter(|(name, _)| !new.contains_key(*name))
        .map(|(name, versions)| Package {
            name: name.clone(),
            versions: list(versions),
        })
        .collect();
    (changed, added, removed)
}

/// The inhibitors that refuse a switch from `old` to `new` (each a
/// `switch-inhibitors` file: a JSON object of names and values): a name
/// both have, with another value (nixpkgs `switchable-system.nix`, as the
/// pre-switch checks compare them). Files that are not such objects are
/// compared whole.
fn inhibitor_changes(old: &str, new: &str) -> Vec<InhibitorChange> {
    type Values = BTreeMap<String, serde_json::Value>;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match (
        serde_json::from_str::<Values>(old),
        serde_json::from_str::<Values>(new),
    ) {
        (Ok(old), Ok(new)) => old
            .iter()
            .filter_map(|(name, before)| {
                let after = new.get(name)?;
                (after != before).then(|| InhibitorChange {
                    name: name.clone(),
                    old: text(before),
                    new: text(after),
                })
            })
            .collect(),
        _ if old.trim() == new.trim() => Vec::new(),
        _ => vec![InhibitorChange {
            name: "*".into(),
            old: old.trim().to_owned(),
            new: new.trim().to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployd_protocol::plan::{BootLinks, RunningSystem};

    fn closure(names: &[(&str, u64)]) -> Vec<ClosurePath> {
        names
            .iter()
            .enumerate()
            .map(|(index, (name, size))| ClosurePath {
                path: format!("/nix/store/{index:a>32}-{name}")
                    .parse()
                    .expect("path"),
                nar_size: *size,
            })
            .collect()
    }

    fn links(kernel: &str) -> BootLinks {
        BootLinks {
            kernel: Some(kernel.into()),
            ..BootLinks::default()
        }
    }

    #[test]
    fn a_host_on_an_older_system() {
        let old = closure(&[
            ("linux-6.1", 100),
            ("hello-2.10", 10),
            ("gone-1", 5),
            ("etc", 1),
        ]);
        let new = closure(&[
            ("linux-6.7", 120),
            ("hello-2.10", 10),
            ("fresh-0.1", 7),
            ("etc", 1),
        ]);
        let answer = PlanResponse {
            hostname: "sambirano".parse().expect("host"),
            store_path: new[0].path.clone(),
            missing: MissingPaths::default(),
            running: Some(RunningSystem {
                store_path: old[0].path.clone(),
                closure: old,
                switch_inhibitors: Some("{\"dbus-implementation\":\"dbus\",\"x\":\"1\"}".into()),
            }),
            booted_links: Some(links("/nix/store/k1")),
        };
        let built = BuiltSystem {
            closure: new,
            boot_links: links("/nix/store/k2"),
            switch_inhibitors: Some("{\"dbus-implementation\":\"broker\",\"y\":\"2\"}".into()),
        };
        let planned = compare(&answer, &built);
        assert_eq!(
            planned.changed,
            [Changed {
                name: "linux".into(),
                old: vec!["6.1".into()],
                new: vec!["6.7".into()]
            }]
        );
        assert_eq!(planned.added[0].name, "fresh");
        assert_eq!(planned.removed[0].name, "gone");
        assert_eq!(
            (planned.closure_bytes_before, planned.closure_bytes_after),
            (116, 138)
        );
        assert_eq!(planned.reboot_for, ["kernel"]);
        assert!(planned.switch_refused());
        assert_eq!(planned.inhibitors_changed[0].new, "broker");
    }

    #[test]
    fn inhibitors_new_or_gone_refuse_nothing() {
        assert!(inhibitor_changes("{\"a\":\"1\"}", "{\"a\":\"1\",\"b\":\"2\"}").is_empty());
        assert!(inhibitor_changes("{\"a\":\"1\"}", "{}").is_empty());
        assert_eq!(inhibitor_changes("odd", "other").len(), 1);
        assert!(inhibitor_changes("same\n", "same").is_empty());
    }
}
