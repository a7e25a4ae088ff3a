//! What the toy flake's `settings.nix` says about the fleet, and how it is
//! written: the hosts, what their systems carry, and what makes a build, a
//! switch or its checks fail or refuse.

use std::collections::BTreeMap;

use anyhow::Result;

/// What the unit of a system's own deployd says its config is; the toy
/// system puts the store path of the config it renders there.
const SYSTEM_DEPLOYD_CONFIG: &str = "@deploydConfig@";

/// What `settings.nix` says about the fleet; each commit writes it anew.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetSettings {
    /// The Nix system double (`x86_64-linux`).
    pub system: String,
    /// The hosts, in order.
    pub hosts: Vec<String>,
    /// The NixOS release the toy systems claim.
    pub version: String,
    /// Changes every system when it changes.
    pub label: u32,
    /// The kernel version (a change means a reboot is needed).
    pub kernel: String,
    /// Hosts whose switch fails: their system's activation fails, and
    /// the switch, going on as NixOS's does, exits 2.
    pub fail_switch: Vec<String>,
    /// Hosts whose system fails to build.
    #[serde(default)]
    pub fail_build: Vec<String>,
    /// Hosts whose switch takes their network down.
    pub break_network: Vec<String>,
    /// Extra paths in every closure, for benchmarks.
    pub bulk_paths: u32,
    /// Random bytes in each extra path.
    pub bulk_bytes_per_path: u64,
    /// Levels the extra paths are arranged in, each path referencing two
    /// of the level below: the longest chain of references among them (1:
    /// a flat closure).
    #[serde(default = "one_level")]
    pub bulk_levels: u32,
    /// The deployd program the system's `deployd.service` runs ("": no unit).
    #[serde(default)]
    pub deployd_exec: String,
    /// Hosts whose system carries a service that fails as soon as it starts.
    #[serde(default)]
    pub fail_unit: Vec<String>,
    /// The deployd that hosts' systems enable themselves, as the NixOS
    /// module does: unit and config in the system.
    #[serde(default)]
    pub system_deployd: SystemDeployd,
    /// Hosts whose systems' switch inhibitors differ from the other
    /// revisions' (`dbus-implementation` is `broker`, not `dbus`).
    #[serde(default)]
    pub changed_inhibitors: Vec<String>,
    /// Hosts whose systems carry a pre-switch check that always fails.
    #[serde(default)]
    pub fail_pre_switch_check: Vec<String>,
    /// Hosts whose systems' init interface is new (`systemd 3`, not
    /// `systemd 2`): they take effect at the next boot only.
    #[serde(default)]
    pub new_init_interface: Vec<String>,
    /// The platform a host's system claims (its `system` file), for hosts
    /// whose system claims another than [`FleetSettings::system`].
    #[serde(default)]
    pub platforms: BTreeMap<String, String>,
    /// The specialisations of each host's system, by host.
    #[serde(default)]
    pub specialisations: BTreeMap<String, Vec<String>>,
    /// Services that hosts' systems add, each wanted by `lab.target`.
    #[serde(default)]
    pub target_units: Vec<TargetUnit>,
}

/// The extra paths a benchmark adds to every closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkPaths {
    /// How many.
    pub paths: u32,
    /// Random bytes in each.
    pub bytes_per_path: u64,
    /// The levels they are arranged in (see [`FleetSettings::bulk_levels`]).
    pub levels: u32,
}

/// A service of a host's system that `lab.target` wants, as a NixOS
/// service with `wantedBy = [ "multi-user.target" ]`: every switch that
/// starts the target starts it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetUnit {
    /// The host whose system has it.
    pub host: String,
    /// Its file name (`lab-flaky.service`).
    pub unit: String,
    /// What it does each time it runs.
    pub runs: UnitRuns,
}

/// What a unit of a toy system does when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnitRuns {
    /// It starts and stays active.
    Succeeds,
    /// It fails.
    Fails,
}

/// `services.deployd` in hosts' systems: those of `hosts` enable it, with
/// `deployd.service` running `exec` and a config of their own in the store
/// (trusting `trusted_keys`, fetching from `substituters` signed by
/// `trusted_public_keys`), as a system made with the NixOS module carries
/// them. The other hosts' systems say it is not enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemDeployd {
    /// The hosts whose systems enable deployd.
    pub hosts: Vec<String>,
    /// The deployd program the unit runs.
    pub exec: String,
    /// `NAME:base64` deploy keys it trusts for everything.
    pub trusted_keys: Vec<String>,
    /// The caches it fetches systems from.
    pub substituters: Vec<String>,
    /// The keys those caches sign with.
    pub trusted_public_keys: Vec<String>,
}

impl FleetSettings {
    /// The first revision of a fleet of `hosts`.
    pub fn new(hosts: &[String]) -> Self {
        FleetSettings {
            system: nix_system(),
            hosts: hosts.to_vec(),
            version: "24.05".into(),
            label: 1,
            kernel: "6.6.1".into(),
            fail_switch: Vec::new(),
            fail_build: Vec::new(),
            break_network: Vec::new(),
            bulk_paths: 0,
            bulk_bytes_per_path: 0,
            bulk_levels: 1,
            deployd_exec: String::new(),
            fail_unit: Vec::new(),
            system_deployd: SystemDeployd::default(),
            changed_inhibitors: Vec::new(),
            fail_pre_switch_check: Vec::new(),
            new_init_interface: Vec::new(),
            platforms: BTreeMap::new(),
            specialisations: BTreeMap::new(),
            target_units: Vec::new(),
        }
    }

    /// The settings as a Nix expression.
    pub fn to_nix(&self) -> Result<String> {
        let deployd_unit = if self.deployd_exec.is_empty() {
            String::new()
        } else {
            crate::systemd_host::deployd_unit(&self.deployd_exec, crate::DEPLOYD_CONFIG)?
        };
        let system_deployd = &self.system_deployd;
        let system_deployd_unit = if system_deployd.hosts.is_empty() {
            String::new()
        } else {
            crate::systemd_host::deployd_unit(&system_deployd.exec, SYSTEM_DEPLOYD_CONFIG)?
        };
        // Rust's `{:?}` of a string is a valid Nix string (no `${` in these;
        // a `$` before a letter, as in the unit's `$MAINPID`, is literal).
        let fields = [
            ("system", format!("{:?}", self.system)),
            ("hosts", nix_list(&self.hosts)),
            ("version", format!("{:?}", self.version)),
            ("label", format!("\"{}\"", self.label)),
            ("kernel", format!("{:?}", self.kernel)),
            ("failSwitch", nix_list(&self.fail_switch)),
            ("failBuild", nix_list(&self.fail_build)),
            ("failUnit", nix_list(&self.fail_unit)),
            ("breakNetwork", nix_list(&self.break_network)),
            (
                "bulk",
                format!(
                    "{{\n    paths = {};\n    bytesPerPath = {};\n    levels = {};\n  }}",
                    self.bulk_paths, self.bulk_bytes_per_path, self.bulk_levels
                ),
            ),
            ("deploydUnit", format!("{deployd_unit:?}")),
            (
                "deployd",
                format!(
                    "{{\n    hosts = {};\n    unit = {:?};\n    trustedKeys = {};\n    substituters = {};\n    trustedPublicKeys = {};\n  }}",
                    nix_list(&system_deployd.hosts),
                    system_deployd_unit,
                    nix_list(&system_deployd.trusted_keys),
                    nix_list(&system_deployd.substituters),
                    nix_list(&system_deployd.trusted_public_keys),
                ),
            ),
            ("labTarget", format!("{:?}", crate::systemd_host::LAB_TARGET)),
            ("changedInhibitors", nix_list(&self.changed_inhibitors)),
            ("failPreSwitchCheck", nix_list(&self.fail_pre_switch_check)),
            ("newInitInterface", nix_list(&self.new_init_interface)),
            (
                "platforms",
                nix_attrs(self.platforms.iter().map(|(host, platform)| (host, format!("{platform:?}")))),
            ),
            (
                "specialisations",
                nix_attrs(self.specialisations.iter().map(|(host, names)| (host, nix_list(names)))),
            ),
            ("targetUnits", target_units_nix(&self.target_units)),
        ];
        let mut nix = String::from("{\n");
        for (name, value) in fields {
            nix.push_str(&format!("  {name} = {value};\n"));
        }
        nix.push_str("}\n");
        Ok(nix)
    }
}

/// A flat closure's levels: one (settings saved before levels came).
fn one_level() -> u32 {
    1
}

/// A Nix list of strings: `[ "a" "b" ]`.
fn nix_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?} ")).collect();
    format!("[ {}]", quoted.concat())
}

/// A Nix attribute set of (name, Nix value): `{ "a" = 1; }`.
fn nix_attrs<'a>(entries: impl Iterator<Item = (&'a String, String)>) -> String {
    let entries: Vec<String> = entries
        .map(|(name, value)| format!("{name:?} = {value}; "))
        .collect();
    format!("{{ {}}}", entries.concat())
}

/// The target units as a Nix list of `{ host; unit; fails; }`.
fn target_units_nix(units: &[TargetUnit]) -> String {
    let entries: Vec<String> = units
        .iter()
        .map(|unit| {
            format!(
                "{{ host = {:?}; unit = {:?}; fails = {}; }} ",
                unit.host,
                unit.unit,
                unit.runs == UnitRuns::Fails
            )
        })
        .collect();
    format!("[ {}]", entries.concat())
}

/// The Nix system double of this machine.
pub fn nix_system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

/// A platform other than `system`, for a system that claims to be built
/// for another machine.
pub fn foreign_platform(system: &str) -> &'static str {
    if system == "aarch64-linux" {
        "x86_64-linux"
    } else {
        "aarch64-linux"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_render_as_nix() {
        let mut settings = FleetSettings::new(&["sambirano".into(), "isalo".into()]);
        settings.fail_switch = vec!["isalo".into()];
        let nix = settings.to_nix().expect("settings");
        assert!(nix.contains(r#"hosts = [ "sambirano" "isalo" ];"#), "{nix}");
        assert!(nix.contains(r#"failSwitch = [ "isalo" ];"#), "{nix}");
        assert!(nix.contains(r#"breakNetwork = [ ];"#), "{nix}");
        assert!(nix.contains(r#"label = "1";"#), "{nix}");
        assert!(nix.contains(r#"deploydUnit = "";"#), "{nix}");
        settings.deployd_exec = "/nix/store/x-deployd/bin/deployd".into();
        let nix = settings.to_nix().expect("settings");
        assert!(
            nix.contains(r#"ExecStart=/nix/store/x-deployd/bin/deployd --config"#),
            "{nix}"
        );
        // The unit's text reaches the toy system as it is (`$MAINPID` too).
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("settings.nix"), &nix).expect("write");
        let output = std::process::Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr"])
            .arg("(import ./settings.nix).deploydUnit")
            .current_dir(dir.path())
            .output()
            .expect("nix-instantiate");
        assert!(output.status.success(), "{output:?}");
        let unit: String = serde_json::from_slice(&output.stdout).expect("a string");
        assert_eq!(
            unit,
            crate::systemd_host::deployd_unit(
                "/nix/store/x-deployd/bin/deployd",
                crate::DEPLOYD_CONFIG
            )
            .expect("unit")
        );
    }

    #[test]
    fn the_switch_settings_render_as_nix() {
        let hosts = ["sambirano".to_owned(), "isalo".to_owned()];
        let mut settings = FleetSettings::new(&hosts);
        let nix = settings.to_nix().expect("settings");
        for empty in [
            "changedInhibitors = [ ];",
            "failPreSwitchCheck = [ ];",
            "newInitInterface = [ ];",
            "platforms = { };",
            "specialisations = { };",
            "targetUnits = [ ];",
        ] {
            assert!(nix.contains(empty), "{empty}: {nix}");
        }
        assert!(
            nix.contains(r#"labTarget = "[Unit]\nDescription=deployd lab host\n"#),
            "{nix}"
        );

        settings.changed_inhibitors = vec!["isalo".into()];
        settings.fail_pre_switch_check = vec!["sambirano".into()];
        settings.new_init_interface = vec!["isalo".into()];
        settings
            .platforms
            .insert("isalo".into(), "aarch64-linux".into());
        settings
            .specialisations
            .insert("sambirano".into(), vec!["rescue".into(), "quiet".into()]);
        settings.target_units = vec![
            TargetUnit {
                host: "isalo".into(),
                unit: "lab-flaky.service".into(),
                runs: UnitRuns::Fails,
            },
            TargetUnit {
                host: "sambirano".into(),
                unit: "lab-extra.service".into(),
                runs: UnitRuns::Succeeds,
            },
        ];
        let nix = settings.to_nix().expect("settings");
        for expected in [
            r#"changedInhibitors = [ "isalo" ];"#,
            r#"failPreSwitchCheck = [ "sambirano" ];"#,
            r#"newInitInterface = [ "isalo" ];"#,
            r#"platforms = { "isalo" = "aarch64-linux"; };"#,
            r#"specialisations = { "sambirano" = [ "rescue" "quiet" ]; };"#,
            r#"targetUnits = [ { host = "isalo"; unit = "lab-flaky.service"; fails = true; } { host = "sambirano"; unit = "lab-extra.service"; fails = false; } ];"#,
        ] {
            assert!(nix.contains(expected), "{expected}: {nix}");
        }
        // One field a line, as before the switch's settings came.
        assert!(nix.starts_with("{\n  system = "), "{nix}");
        assert!(nix.ends_with(";\n}\n"), "{nix}");
    }
}
