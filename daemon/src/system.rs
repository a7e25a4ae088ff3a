//! Reading the machine's systems: the system profile and its generations,
//! the running and booted systems, whether a store path is a NixOS system,
//! and whether a system needs a reboot.

use std::path::{Path, PathBuf};

use deployd_protocol::api::Generation;
use deployd_protocol::plan::BootLinks;

/// A link's target as text, if the link exists.
pub fn read_link(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|target| target.to_string_lossy().into_owned())
}

/// The system profile (`/nix/var/nix/profiles/system`) and its generations.
#[derive(Debug, Clone)]
pub struct Profile {
    path: PathBuf,
}

impl Profile {
    /// The profile at `path`.
    pub fn new(path: &Path) -> Self {
        Profile {
            path: path.to_owned(),
        }
    }

    /// The profile's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current generation's number.
    pub fn current_generation(&self) -> Option<u64> {
        let link = read_link(&self.path)?;
        generation_number(self.name()?, &link)
    }

    /// The system the profile points to now.
    pub fn current_system(&self) -> Option<String> {
        let link = read_link(&self.path)?;
        read_link(&self.path.with_file_name(link))
    }

    /// The system of generation `number`.
    pub fn system_of(&self, number: u64) -> Option<String> {
        let name = format!("{}-{number}-link", self.name()?);
        read_link(&self.path.with_file_name(name))
    }

    /// Every generation, oldest first.
    pub fn generations(&self) -> Vec<Generation> {
        let (Some(name), Some(dir)) = (self.name(), self.path.parent()) else {
            return Vec::new();
        };
        let current = self.current_generation();
        let mut generations: Vec<Generation> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name();
                let number = generation_number(name, file.to_str()?)?;
                Some(Generation {
                    number,
                    system: read_link(&entry.path())?,
                    current: current == Some(number),
                })
            })
            .collect();
        generations.sort_by_key(|generation| generation.number);
        generations
    }

    fn name(&self) -> Option<&str> {
        self.path.file_name()?.to_str()
    }
}

/// `system-12-link` → 12, for the profile named `system`.
fn generation_number(profile: &str, link: &str) -> Option<u64> {
    link.strip_prefix(profile)?
        .strip_prefix('-')?
        .strip_suffix("-link")?
        .parse()
        .ok()
}

/// The store path (`/nix/store/<hash>-<name>`) a path lies in, if it does.
pub fn store_path_of(path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix("/nix/store").ok()?;
    let first = relative.components().next()?;
    Some(Path::new("/nix/store").join(first))
}

/// Whether `system` runs another deployd than this process: the program its
/// `unit`'s `ExecStart=` names lies in another store path than our own
/// executable, or it is given another `--config` than `own_config`.
/// Unknown (false) when the unit or the programs' store paths are unknown.
pub fn runs_another_daemon(system: &Path, unit: &str, own_config: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(system.join("etc/systemd/system").join(unit)) else {
        return false;
    };
    let Some(command) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("ExecStart="))
    else {
        return false;
    };
    let words: Vec<&str> = command
        .trim_start_matches(['@', '-', ':', '+', '!'])
        .split_whitespace()
        .collect();
    let config = words
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| Path::new(pair[1]));
    if config.is_some_and(|config| config != own_config) {
        return true;
    }
    let program = words.first().map(PathBuf::from);
    let ours = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok());
    match (
        program.as_deref().and_then(store_path_of),
        ours.as_deref().and_then(store_path_of),
    ) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => false,
    }
}

/// The name of `parent`'s specialisation that `running` is, if it is one:
/// a NixOS system links each of its specialisations, whole systems of their
/// own, as `specialisation/NAME` (nixpkgs
/// `nixos/modules/system/activation/top-level.nix`).
pub fn specialisation_of(parent: &Path, running: &Path) -> Option<String> {
    let running = running.canonicalize().ok()?;
    std::fs::read_dir(parent.join("specialisation"))
        .ok()?
        .flatten()
        .find(|entry| entry.path().canonicalize().ok().as_ref() == Some(&running))
        .and_then(|entry| entry.file_name().to_str().map(str::to_owned))
}

/// Why a store path is not a NixOS system.
pub fn check_nixos_system(system: &Path) -> Result<(), String> {
    for required in ["nixos-version", "bin/switch-to-configuration"] {
        if !system.join(required).is_file() {
            return Err(format!(
                "{} is not a NixOS system: it has no {required}",
                system.display()
            ));
        }
    }
    Ok(())
}

/// Whether running `system` fully needs a reboot from `booted`: its kernel,
/// initrd or kernel modules differ. Unknown when nothing was booted.
pub fn reboot_required(system: &Path, booted: &Path) -> bool {
    if !booted.exists() {
        return false;
    }
    boot_links(system).need_reboot_from(&boot_links(booted))
}

/// Where `system`'s `kernel`, `initrd` and `kernel-modules` links point.
pub fn boot_links(system: &Path) -> BootLinks {
    BootLinks::read(|name| read_link(&system.join(name)))
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), new at every boot.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn generations_are_read_from_the_profile_links() {
        let dir = tempfile::tempdir().expect("temp dir");
        let profile = dir.path().join("system");
        symlink("/nix/store/a-one", dir.path().join("system-1-link")).expect("link");
        symlink("/nix/store/b-two", dir.path().join("system-2-link")).expect("link");
        symlink("system-2-link", &profile).expect("link");
        symlink("/nix/store/x", dir.path().join("other-3-link")).expect("link");
        let profile = Profile::new(&profile);
        assert_eq!(profile.current_generation(), Some(2));
        assert_eq!(
            profile.current_system().as_deref(),
            Some("/nix/store/b-two")
        );
        assert_eq!(profile.system_of(1).as_deref(), Some("/nix/store/a-one"));
        let generations = profile.generations();
        assert_eq!(generations.len(), 2);
        assert!(!generations[0].current && generations[1].current);
    }

    #[test]
    fn a_missing_profile_has_no_generation() {
        let profile = Profile::new(Path::new("/nonexistent/system"));
        assert_eq!(profile.current_generation(), None);
        assert!(profile.generations().is_empty());
    }

    #[test]
    fn reboot_is_required_when_the_kernel_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let make = |name: &str, kernel: &str| {
            let system = dir.path().join(name);
            std::fs::create_dir(&system).expect("dir");
            symlink(kernel, system.join("kernel")).expect("link");
            symlink("/nix/store/i", system.join("initrd")).expect("link");
            symlink("/nix/store/m", system.join("kernel-modules")).expect("link");
            system
        };
        let booted = make("booted", "/nix/store/k1");
        assert!(!reboot_required(&make("same", "/nix/store/k1"), &booted));
        assert!(reboot_required(&make("new", "/nix/store/k2"), &booted));
        assert!(!reboot_required(&booted, &dir.path().join("never-booted")));
    }

    #[test]
    fn store_paths_of_programs() {
        assert_eq!(
            store_path_of(Path::new("/nix/store/abc-deployd-1/bin/deployd")),
            Some(PathBuf::from("/nix/store/abc-deployd-1"))
        );
        assert_eq!(store_path_of(Path::new("/usr/bin/deployd")), None);
    }

    #[test]
    fn a_running_specialisation_is_found_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let parent = dir.path().join("parent");
        let work = dir.path().join("work-system");
        std::fs::create_dir_all(parent.join("specialisation")).expect("dir");
        std::fs::create_dir(&work).expect("dir");
        symlink(&work, parent.join("specialisation/work")).expect("link");
        symlink(&work, dir.path().join("current-system")).expect("link");
        assert_eq!(
            specialisation_of(&parent, &dir.path().join("current-system")).as_deref(),
            Some("work")
        );
        assert_eq!(specialisation_of(&parent, &parent), None);
        assert_eq!(specialisation_of(&work, &work), None);
    }

    #[test]
    fn a_system_needs_its_version_and_switch_script() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(check_nixos_system(dir.path()).is_err());
        std::fs::write(dir.path().join("nixos-version"), "24.05").expect("write");
        std::fs::create_dir(dir.path().join("bin")).expect("dir");
        let error = check_nixos_system(dir.path()).expect_err("no script");
        assert!(error.contains("bin/switch-to-configuration"), "{error}");
        std::fs::write(dir.path().join("bin/switch-to-configuration"), "").expect("write");
        assert!(check_nixos_system(dir.path()).is_ok());
    }
}
