//! The toy flake: a real git repository holding a flake with
//! `nixosConfigurations.<host>.config.system.build.toplevel` for every lab
//! host, and helpers that commit new revisions of the fleet (a changed
//! system, a failing switch, a switch that breaks the network, a new kernel,
//! a large closure, and what makes NixOS's switch refuse or report: changed
//! switch inhibitors, a failing pre-switch check, a new init interface, a
//! specialisation, another platform, a unit that `lab.target` wants).
//! `settings` writes what each revision says, `settings.nix`.

mod settings;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run::{run, stdout_text};

pub use settings::{
    foreign_platform, nix_system, BulkPaths, FleetSettings, SystemDeployd, TargetUnit, UnitRuns,
};

const FLAKE_NIX: &str = include_str!("../../toy-flake/flake.nix");
const TOY_SYSTEM_NIX: &str = include_str!("../../toy-flake/toy-system.nix");
const SWITCH_PROGRAM: &str = include_str!("../../toy-flake/switch-to-configuration.sh");

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

    /// A revision in which `host`'s switch fails (its activation fails and
    /// it exits 2; the others are unchanged).
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

    /// A revision whose closures hold `bulk.paths` more paths of
    /// `bulk.bytes_per_path`, in `bulk.levels` levels.
    pub fn commit_large_closure(&mut self, bulk: BulkPaths) -> Result<String> {
        self.commit("A large closure", move |settings| {
            settings.bulk_paths = bulk.paths;
            settings.bulk_bytes_per_path = bulk.bytes_per_path;
            settings.bulk_levels = bulk.levels;
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
