//! What the flake's packages declare, read back with real Nix:
//! `tests/package-eval.nix` evaluates `flake.nix` and
//! `nixos-module/package.nix` with a stand-in for nixpkgs (its header says
//! what that cannot check) and returns the arguments of each package's
//! `buildRustPackage`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_lab::run::run_within;
use serde::Deserialize;

/// How long reading the packages may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// One package of the flake, as `rustPlatform.buildRustPackage` receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// `src`: what `lib.fileset.toSource` was given.
    pub src: SourceSet,
    /// Programs the build runs, by nixpkgs name.
    pub native_build_inputs: Vec<String>,
    /// Libraries it links, by nixpkgs name.
    pub build_inputs: Vec<String>,
    /// What cargo builds (`--package NAME`).
    pub cargo_build_flags: Vec<String>,
    /// The program it installs (`meta.mainProgram`).
    pub main_program: String,
    /// What runs after the install (`postInstall`, empty for none).
    pub post_install: String,
}

/// Native inputs that are setup hooks of the install phase, after cargo:
/// shell functions `postInstall` calls (`installShellCompletion`,
/// `installManPage`), no file cargo could see. The sandbox has nothing to
/// provide or hide for them; the test runs the commands they are given.
pub const INSTALL_HOOKS: &[&str] = &["installShellFiles"];

/// A source set: files and directories under one root, all absolute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSet {
    /// `root`: what the paths are relative to in the build.
    pub root: PathBuf,
    /// The files and directories.
    pub paths: Vec<PathBuf>,
}

impl SourceSet {
    /// The paths relative to the root.
    pub fn relative_paths(&self) -> Result<Vec<PathBuf>> {
        self.paths
            .iter()
            .map(|path| {
                path.strip_prefix(&self.root)
                    .map(Path::to_owned)
                    .with_context(|| {
                        format!("{} is not under {}", path.display(), self.root.display())
                    })
            })
            .collect()
    }

    /// This set without `path`.
    pub fn without(&self, path: &Path) -> SourceSet {
        SourceSet {
            root: self.root.clone(),
            paths: self.paths.iter().filter(|p| *p != path).cloned().collect(),
        }
    }
}

/// The flake's packages (`packages.<this system>`), by attribute name.
pub fn flake_packages(workspace: &Path) -> Result<BTreeMap<String, Package>> {
    let output = run_within(
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(workspace.join("tests/package-eval.nix"))
            .arg("--argstr")
            .arg("flake")
            .arg(workspace.join("flake.nix")),
        EVAL_TIMEOUT,
    )?;
    serde_json::from_slice(&output.stdout).context("package-eval.nix's answer")
}

/// Every package of the flake built at once, as the test builds them.
#[derive(Debug, Clone)]
pub struct Build {
    /// The source set, the same for every package.
    pub source: SourceSet,
    /// Every package's native inputs, programs and libraries alike: in the
    /// sandbox both are only files that can be seen or not.
    pub inputs: BTreeSet<String>,
    /// Every package's cargo flags, one after the other (`--package A
    /// --package B`), each package's once.
    pub cargo_flags: Vec<String>,
    /// The programs the packages install.
    pub programs: BTreeSet<String>,
    /// Each program's package's `postInstall`, when it has one.
    pub post_install: BTreeMap<String, String>,
}

impl Build {
    /// All of `packages` in one build; fails if their source sets differ,
    /// which one build could not honour.
    pub fn of(packages: &BTreeMap<String, Package>) -> Result<Build> {
        let Some(first) = packages.values().next() else {
            bail!("the flake has no packages");
        };
        let mut build = Build {
            source: first.src.clone(),
            inputs: BTreeSet::new(),
            cargo_flags: Vec::new(),
            programs: BTreeSet::new(),
            post_install: BTreeMap::new(),
        };
        let mut flags_seen = BTreeSet::new();
        for (name, package) in packages {
            if package.src != build.source {
                bail!(
                    "package {name} has a source set of its own: {:?}",
                    package.src
                );
            }
            build.inputs.extend(
                package
                    .native_build_inputs
                    .iter()
                    .filter(|input| !INSTALL_HOOKS.contains(&input.as_str()))
                    .cloned(),
            );
            build.inputs.extend(package.build_inputs.iter().cloned());
            if flags_seen.insert(package.cargo_build_flags.clone()) {
                build
                    .cargo_flags
                    .extend(package.cargo_build_flags.iter().cloned());
            }
            build.programs.insert(package.main_program.clone());
            if !package.post_install.is_empty() {
                build
                    .post_install
                    .insert(package.main_program.clone(), package.post_install.clone());
            }
        }
        Ok(build)
    }
}
