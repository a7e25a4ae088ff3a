//! The toy flake: a real git repository holding a flake with
//! `nixosConfigurations.<host>.config.system.build.toplevel` for every lab
//! host, and helpers that commit new revisions of the fleet (a changed
//! system, a failing switch, a switch that breaks the network, a new kernel,
//! a large closure).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run::{run, stdout_text};

const FLAKE_NIX: &str = include_str!("../toy-flake/flake.nix");
const TOY_SYSTEM_NIX: &str = include_str!("../toy-flake/toy-system.nix");
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
        }
    }

    /// The settings as a Nix expression.
    pub fn to_nix(&self) -> Result<String> {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|item| format!("{item:?} ")).collect();
            format!("[ {}]", quoted.concat())
        };
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
        Ok(format!(
            "{{\n  system = {:?};\n  hosts = {};\n  version = {:?};\n  label = \"{}\";\n  kernel = {:?};\n  failSwitch = {};\n  failBuild = {};\n  failUnit = {};\n  breakNetwork = {};\n  bulk = {{\n    paths = {};\n    bytesPerPath = {};\n  }};\n  deploydUnit = {:?};\n  deployd = {{\n    hosts = {};\n    unit = {:?};\n    trustedKeys = {};\n    substituters = {};\n    trustedPublicKeys = {};\n  }};\n}}\n",
            self.system,
            list(&self.hosts),
            self.version,
            self.label,
            self.kernel,
            list(&self.fail_switch),
            list(&self.fail_build),
            list(&self.fail_unit),
            list(&self.break_network),
            self.bulk_paths,
            self.bulk_bytes_per_path,
            deployd_unit,
            list(&system_deployd.hosts),
            system_deployd_unit,
            list(&system_deployd.trusted_keys),
            list(&system_deployd.substituters),
            list(&system_deployd.trusted_public_keys),
        ))
    }
}

/// The Nix system double of this machine.
pub fn nix_system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
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

    /// A revision in which every host's system changed.
    pub fn commit_changed_system(&mut self) -> Result<String> {
        self.commit("Change every system", |settings| {
            settings.label += 1;
            settings.fail_switch.clear();
            settings.fail_build.clear();
            settings.fail_unit.clear();
            settings.break_network.clear();
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
