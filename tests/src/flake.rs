//! The toy flake: a real git repository holding a flake with
//! `nixosConfigurations.<host>.config.system.build.toplevel` for every lab
//! host, and helpers that commit new revisions of the fleet (a changed
//! system, a failing switch, a switch that breaks the network, a new kernel,
//! a large closure, and what makes NixOS's switch refuse or report: changed
//! switch inhibitors, a failing pre-switch check, a new init interface, a
//! specialisation, another platform, a unit that `lab.target` wants).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run::{run, stdout_text};

const FLAKE_NIX: &str = include_str!("../toy-flake/flake.nix");
const TOY_SYSTEM_NIX: &str = include_str!("../toy-flake/toy-system.nix");
const SWITCH_PROGRAM: &str = include_str!("../toy-flake/switch-to-configuration.sh");
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
    /// Hosts whose switch fails.
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
                    "{{\n    paths = {};\n    bytesPerPath = {};\n  }}",
                    self.bulk_paths, self.bulk_bytes_per_path
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

/// A git repository holding the lab's flake.
#[derive(Debug)]
pub struct ToyFlake {
    dir: PathBuf,
    settings: FleetSettings,
}

impl ToyFlake {
    /// Creates the repository in `dir` with a first commit for `hosts`.
    pub fn create(dir: &Path, hosts: &[String]) -> Result<(ToyFlake, String)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("flake.nix"), FLAKE_NIX)?;
        std::fs::write(dir.join("toy-system.nix"), TOY_SYSTEM_NIX)?;
        std::fs::write(dir.join("switch-to-configuration.sh"), SWITCH_PROGRAM)?;
        git(dir, &["init", "-q", "-b", "main"])?;
        let mut flake = ToyFlake {
            dir: dir.to_owned(),
            settings: FleetSettings::new(hosts),
        };
        let rev = flake.commit("A fleet of toy NixOS systems", |_| {})?;
        Ok((flake, rev))
    }

    /// Opens an existing repository made by [`ToyFlake::create`].
    pub fn open(dir: &Path, settings: FleetSettings) -> ToyFlake {
        ToyFlake {
            dir: dir.to_owned(),
            settings,
        }
    }

    /// The repository's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings of the last commit.
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// Changes the settings, commits them, and returns the new revision.
    pub fn commit(
        &mut self,
        message: &str,
        change: impl FnOnce(&mut FleetSettings),
    ) -> Result<String> {
        change(&mut self.settings);
        std::fs::write(self.dir.join("settings.nix"), self.settings.to_nix()?)?;
        git(&self.dir, &["add", "-A"])?;
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", message])?;
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// A revision in which every host's system changed, with none of the
    /// settings that make a build, a switch or its checks fail or refuse
    /// (what hosts' systems carry stays: specialisations, the units
    /// `lab.target` wants, deployd).
    pub fn commit_changed_system(&mut self) -> Result<String> {
        self.commit("Change every system", |settings| {
            settings.label += 1;
            settings.fail_switch.clear();
            settings.fail_build.clear();
            settings.fail_unit.clear();
            settings.break_network.clear();
            settings.changed_inhibitors.clear();
            settings.fail_pre_switch_check.clear();
            settings.new_init_interface.clear();
            settings.platforms.clear();
        })
    }

    /// A revision in which `host`'s switch fails (the others are unchanged).
    pub fn commit_failing_switch(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system whose switch fails", move |settings| {
            settings.fail_switch = vec![host];
        })
    }

    /// A revision in which `host`'s system carries `lab-broken.service`,
    /// which fails as soon as it starts (its switch itself succeeds).
    pub fn commit_failing_unit(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system with a service that fails", move |settings| {
            settings.label += 1;
            settings.fail_unit = vec![host];
        })
    }

    /// A revision in which `host`'s system fails to build.
    pub fn commit_failing_build(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system that fails to build", move |settings| {
            settings.fail_build = vec![host];
        })
    }

    /// A revision in which `host`'s switch takes its network down.
    pub fn commit_network_breaking(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit(
            "A system whose switch breaks the network",
            move |settings| {
                settings.break_network = vec![host];
            },
        )
    }

    /// A revision with a new kernel on every host.
    pub fn commit_new_kernel(&mut self, version: &str) -> Result<String> {
        let version = version.to_owned();
        self.commit("A new kernel", move |settings| settings.kernel = version)
    }

    /// A revision whose closures hold `paths` more paths of `bytes_per_path`.
    pub fn commit_large_closure(&mut self, paths: u32, bytes_per_path: u64) -> Result<String> {
        self.commit("A large closure", move |settings| {
            settings.bulk_paths = paths;
            settings.bulk_bytes_per_path = bytes_per_path;
        })
    }

    /// A revision in which `host`'s system changes a switch inhibitor
    /// (`dbus-implementation`: `dbus` becomes `broker`): NixOS's pre-switch
    /// checks refuse to switch to it from a system with the old value,
    /// except for `boot` and `dry-activate`.
    pub fn commit_changed_inhibitors(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system with changed switch inhibitors", move |settings| {
            settings.label += 1;
            settings.changed_inhibitors = vec![host];
        })
    }

    /// A revision in which `host`'s system carries a pre-switch check
    /// (`system.preSwitchChecks`) that always fails: every action but
    /// `NIXOS_NO_CHECK=1` runs it and ends with status 1.
    pub fn commit_failing_pre_switch_check(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system whose pre-switch check fails", move |settings| {
            settings.label += 1;
            settings.fail_pre_switch_check = vec![host];
        })
    }

    /// A revision in which `host`'s system has a new init interface
    /// (`init-interface-version`): `switch` installs its boot loader entry,
    /// then exits 100 and changes nothing more, and `test` exits 100.
    pub fn commit_new_init_interface(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        self.commit("A system with a new init interface", move |settings| {
            settings.label += 1;
            settings.new_init_interface = vec![host];
        })
    }

    /// A revision in which `host`'s system has a specialisation called
    /// `name` (`specialisation/NAME`, a whole system of its own), beside
    /// those it had.
    pub fn commit_specialisation(&mut self, host: &str, name: &str) -> Result<String> {
        let (host, name) = (host.to_owned(), name.to_owned());
        self.commit("A system with a specialisation", move |settings| {
            settings.label += 1;
            let names = settings.specialisations.entry(host).or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        })
    }

    /// A revision in which `host`'s system claims another platform than
    /// this machine's (its `system` file says `aarch64-linux` on x86_64,
    /// `x86_64-linux` elsewhere); it still builds and runs here.
    pub fn commit_foreign_platform(&mut self, host: &str) -> Result<String> {
        let host = host.to_owned();
        let platform = foreign_platform(&self.settings.system).to_owned();
        self.commit("A system for another platform", move |settings| {
            settings.label += 1;
            settings.platforms.insert(host, platform);
        })
    }

    /// A revision in which `host`'s system carries `unit`, a service that
    /// `lab.target` wants (so every switch starts it) and that runs as
    /// `runs` says; it stays in later revisions, as a service stays in a
    /// configuration.
    pub fn commit_unit_wanted_by_target(
        &mut self,
        host: &str,
        unit: &str,
        runs: UnitRuns,
    ) -> Result<String> {
        let wanted = TargetUnit {
            host: host.to_owned(),
            unit: unit.to_owned(),
            runs,
        };
        self.commit(
            "A system with a service lab.target wants",
            move |settings| {
                settings.label += 1;
                settings
                    .target_units
                    .retain(|other| (&other.host, &other.unit) != (&wanted.host, &wanted.unit));
                settings.target_units.push(wanted);
            },
        )
    }

    /// The revision of the last commit.
    pub fn head(&self) -> Result<String> {
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// The flake reference of revision `rev`.
    pub fn reference(&self, rev: &str) -> String {
        format!("git+file://{}?rev={rev}", self.dir.display())
    }

    /// The installable of `host`'s system at revision `rev`.
    pub fn installable(&self, rev: &str, host: &str) -> String {
        format!(
            "{}#nixosConfigurations.{host}.config.system.build.toplevel",
            self.reference(rev)
        )
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=deployd lab",
            "-c",
            "user.email=lab@deployd.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args))?;
    Ok(stdout_text(&output))
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
        let output = Command::new("nix-instantiate")
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

    #[test]
    fn the_switch_knobs_commit_what_they_say() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = ["sambirano".to_owned(), "isalo".to_owned()];
        let (mut flake, _) = ToyFlake::create(&dir.path().join("flake"), &hosts).expect("create");
        assert!(flake.dir().join("switch-to-configuration.sh").is_file());
        flake.commit_changed_inhibitors("isalo").expect("commit");
        flake
            .commit_failing_pre_switch_check("isalo")
            .expect("commit");
        flake.commit_new_init_interface("isalo").expect("commit");
        flake.commit_foreign_platform("isalo").expect("commit");
        flake
            .commit_specialisation("sambirano", "rescue")
            .expect("commit");
        flake
            .commit_specialisation("sambirano", "rescue")
            .expect("commit");
        flake
            .commit_unit_wanted_by_target("sambirano", "lab-flaky.service", UnitRuns::Succeeds)
            .expect("commit");
        flake
            .commit_unit_wanted_by_target("sambirano", "lab-flaky.service", UnitRuns::Fails)
            .expect("commit");
        let settings = flake.settings().clone();
        assert_eq!(settings.changed_inhibitors, ["isalo"]);
        assert_eq!(settings.fail_pre_switch_check, ["isalo"]);
        assert_eq!(settings.new_init_interface, ["isalo"]);
        assert_eq!(
            settings.platforms["isalo"],
            foreign_platform(&settings.system)
        );
        assert_ne!(settings.platforms["isalo"], settings.system);
        assert_eq!(settings.specialisations["sambirano"], ["rescue"]);
        assert_eq!(
            settings.target_units,
            [TargetUnit {
                host: "sambirano".into(),
                unit: "lab-flaky.service".into(),
                runs: UnitRuns::Fails,
            }]
        );

        // A changed system drops what makes a switch refuse, and keeps what
        // the systems carry.
        flake.commit_changed_system().expect("commit");
        let settings = flake.settings();
        assert!(settings.changed_inhibitors.is_empty());
        assert!(settings.fail_pre_switch_check.is_empty());
        assert!(settings.new_init_interface.is_empty());
        assert!(settings.platforms.is_empty());
        assert_eq!(settings.specialisations["sambirano"], ["rescue"]);
        assert_eq!(settings.target_units.len(), 1);
    }

    #[test]
    fn commits_are_real_git_revisions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut flake, first) =
            ToyFlake::create(&dir.path().join("flake"), &["sambirano".into()]).expect("create");
        assert_eq!(first.len(), 40);
        let second = flake.commit_failing_switch("sambirano").expect("commit");
        assert_ne!(first, second);
        let settings = std::fs::read_to_string(flake.dir().join("settings.nix")).expect("read");
        assert!(settings.contains(r#"failSwitch = [ "sambirano" ];"#));
        assert_eq!(
            flake.installable(&second, "sambirano"),
            format!(
                "git+file://{}/flake?rev={second}#nixosConfigurations.sambirano.config.system.build.toplevel",
                dir.path().display()
            )
        );
    }
}
