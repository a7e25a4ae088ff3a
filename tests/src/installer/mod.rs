//! New machines for `push install`: a lab node booted from a stand-in NixOS
//! installer, then rebooted from the disk it was installed on.
//!
//! The installer is what a machine booted from the NixOS installer image
//! offers: systemd, a root shell over a real OpenSSH server, Nix with an
//! empty store of its own, and the installer's tools, here stand-ins named
//! as such (`nixos-install`, `nixos-enter`, `nixos-generate-config`, next
//! to this file, each modelled on the nixpkgs script of the same name). The
//! machine's disk is a directory of the lab that the installer sees at
//! `/media/disk`; [`Lab::mount_disk`] mounts it at `/mnt`, as partitioning
//! and mounting would.
//!
//! [`Lab::reboot_from_disk`] powers the installer off and boots what was
//! installed, as a NixOS machine's boot loader and stage 2 do: the disk's
//! `/nix`, `/etc/nix` and `/var/lib` become the machine's, the boot entry
//! the installed system's `switch-to-configuration boot` recorded becomes
//! `/run/current-system`, its `/etc/nix/nix.conf` is installed, and systemd
//! starts the system's own units (its `deployd.service` among them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::deployd::DEPLOYD_PORT;
use crate::lab::{wait_for_port, Lab};
use crate::net;
use crate::node::Node;
use crate::ssh::SshAccess;
use crate::systemd_host::{wait_until_running, Boot, LAB_TARGET};

/// The stand-in installer's tools, installed in its `/usr/local/sbin`.
const INSTALLER_TOOLS: [(&str, &str); 3] = [
    ("nixos-install", include_str!("nixos-install")),
    ("nixos-enter", include_str!("nixos-enter")),
    (
        "nixos-generate-config",
        include_str!("nixos-generate-config"),
    ),
];

/// The installer's `nix.conf`: the installer image's, without its cache
/// (the lab has no network beyond itself), and with builds as root (see
/// `Lab::write_nix_configs`).
const INSTALLER_NIX_CONF: &str = "sandbox = false\nbuild-users-group =\nsubstituters =\n\
     experimental-features = nix-command flakes\n";

/// Where a toy system's boot loader entry is (`switch-to-configuration
/// boot` points it at the system), seen on the machine.
const BOOT_ENTRY: &str = "var/lib/lab/boot-default";

/// A machine booted from the installer.
#[derive(Debug, Clone)]
pub struct NewMachine {
    /// Its node (its name is the host name it is to have).
    pub node: Node,
    /// Its disk, as this machine sees it.
    pub disk: PathBuf,
    /// How to reach the installer's root shell.
    pub ssh: SshAccess,
}

impl NewMachine {
    /// The file at `inside` on the machine's disk (links resolved as the
    /// installed machine resolves them).
    pub fn read_on_disk(&self, inside: &str) -> Result<String> {
        let path = inside_disk(&self.disk, inside)?;
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

impl Lab {
    /// Adds a machine called `name` to the lab's network, with an empty
    /// disk, and boots it from the installer; returns it once its sshd
    /// answers. Its disk is not mounted yet.
    pub fn add_new_machine(&mut self, name: &str) -> Result<NewMachine> {
        let base = self.dir().join("machines").join(name);
        let disk = base.join("disk");
        std::fs::create_dir_all(&disk)?;
        let node = self.add_host_node(name, base.join("installer"))?;
        std::fs::write(node.outside("/etc/nix/nix.conf"), INSTALLER_NIX_CONF)?;
        let boot = Boot {
            units: vec![("lab.target".into(), LAB_TARGET.into())],
            tools: INSTALLER_TOOLS
                .iter()
                .map(|(file, text)| ((*file).to_owned(), (*text).to_owned()))
                .collect(),
            disk: Some(disk.clone()),
        };
        let node = self.boot_and_wait(name, &boot)?;
        let ssh = self.start_host_ssh(&node)?;
        Ok(NewMachine { node, disk, ssh })
    }

    /// Mounts the machine's disk at `/mnt` in its installer.
    pub fn mount_disk(&self, machine: &NewMachine) -> Result<()> {
        let node = self.node(&machine.node.name)?;
        node.run(&["mount", "--bind", "/media/disk", "/mnt"])?;
        Ok(())
    }

    /// Powers the installer off and boots the machine from its disk (see
    /// the module's documentation); returns the booted host once systemd
    /// runs and deployd answers on its port.
    pub fn reboot_from_disk(&mut self, machine: &NewMachine) -> Result<Node> {
        let name = machine.node.name.clone();
        // Powered off: every process of the installer ends, its PID 1 and
        // with it its mounts among them.
        net::kill_all_in(&machine.node.netns)
            .with_context(|| format!("powering the installer of {name} off"))?;
        let system = boot_entry(&machine.disk)?;
        let root = machine
            .disk
            .parent()
            .context("the disk has no parent directory")?
            .join("booted");
        prepare_booted_root(&root, &machine.disk, &system)?;
        self.change_host(&name, |host| {
            host.root = root.clone();
            host.pid1 = None;
        })?;
        let units_dir = inside_disk(&machine.disk, &format!("{system}/etc/systemd/system"))?;
        let mut units = Vec::new();
        let mut wanted = Vec::new();
        for entry in std::fs::read_dir(&units_dir).with_context(|| {
            format!(
                "the installed system has no units in {}",
                units_dir.display()
            )
        })? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            // The system's `lab.target` and what it wants are made below.
            if !file.ends_with(".service") || !entry.file_type()?.is_file() {
                continue;
            }
            units.push((file.clone(), std::fs::read_to_string(entry.path())?));
            wanted.push(file);
        }
        // As multi-user.target wants a NixOS system's services.
        let target = format!("{LAB_TARGET}Wants={}\n", wanted.join(" "));
        units.push(("lab.target".into(), target));
        let boot = Boot {
            units,
            ..Boot::default()
        };
        let host = self.boot_and_wait(&name, &boot)?;
        wait_for_port((host.address, DEPLOYD_PORT).into(), Duration::from_secs(30))
            .with_context(|| format!("the installed deployd on {name} did not come up"))?;
        Ok(host)
    }

    /// Boots node `name` as `boot` says and waits until systemd runs.
    fn boot_and_wait(&mut self, name: &str, boot: &Boot) -> Result<Node> {
        let pid1 = self.boot_node(name, boot)?;
        let node = self.set_pid1(name, pid1)?;
        wait_until_running(&node, Duration::from_secs(60))?;
        Ok(node)
    }
}

/// The system the disk's boot entry points to.
fn boot_entry(disk: &Path) -> Result<String> {
    let entry = disk.join(BOOT_ENTRY);
    let target = std::fs::read_link(&entry).with_context(|| {
        format!(
            "the disk has no boot entry ({}): was the system installed?",
            entry.display()
        )
    })?;
    Ok(target.to_string_lossy().into_owned())
}

/// Where `inside` (an absolute path on the machine) is on the disk, its
/// links resolved as the machine would resolve them (a store path's links
/// point into the machine's `/nix/store`, which is the disk's).
fn inside_disk(disk: &Path, inside: &str) -> Result<PathBuf> {
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<String> = components(inside);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let outside = disk.join(candidate.strip_prefix("/")?);
        match std::fs::read_link(&outside) {
            Ok(link) => {
                links += 1;
                if links > 40 {
                    bail!("too many links resolving {inside} on the disk");
                }
                let link = link.to_string_lossy().into_owned();
                if link.starts_with('/') {
                    resolved = PathBuf::from("/");
                }
                pending.extend(components(&link));
            }
            Err(_) => resolved = candidate,
        }
    }
    Ok(disk.join(resolved.strip_prefix("/")?))
}

/// The components of `path`, last first (to pop them in order).
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .rev()
        .map(str::to_owned)
        .collect()
}

/// The booted machine's root: the disk's `/nix`, `/etc/nix` and `/var/lib`,
/// and a fresh `/run` in which the booted system is current, as stage 2
/// makes it; the system's `nix.conf` goes to `/etc/nix`, as its activation
/// would put it.
fn prepare_booted_root(root: &Path, disk: &Path, system: &str) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    std::fs::create_dir_all(root.join("run"))?;
    for (dir, on_disk) in [
        ("nix", "nix"),
        ("etc-nix", "etc/nix"),
        ("var-lib", "var/lib"),
    ] {
        let target = disk.join(on_disk);
        std::fs::create_dir_all(&target)?;
        std::os::unix::fs::symlink(&target, root.join(dir))?;
    }
    std::fs::create_dir_all(disk.join("var/lib/home"))?;
    for link in ["current-system", "booted-system"] {
        std::os::unix::fs::symlink(system, root.join("run").join(link))?;
    }
    let nix_conf = inside_disk(disk, &format!("{system}/etc/nix.conf"))?;
    if nix_conf.exists() {
        std::fs::copy(&nix_conf, disk.join("etc/nix/nix.conf"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_the_disk_resolve_links_as_the_machine_would() {
        let disk = tempfile::tempdir().expect("temp dir");
        let store = disk.path().join("nix/store");
        std::fs::create_dir_all(store.join("e-etc/systemd")).expect("dirs");
        std::fs::create_dir_all(store.join("s-system")).expect("dirs");
        std::os::unix::fs::symlink("/nix/store/e-etc", store.join("s-system/etc")).expect("link");
        std::os::unix::fs::symlink("s-system", store.join("profile")).expect("link");
        assert_eq!(
            inside_disk(disk.path(), "/nix/store/s-system/etc/systemd").expect("resolved"),
            store.join("e-etc/systemd")
        );
        assert_eq!(
            inside_disk(disk.path(), "/nix/store/profile/etc/systemd").expect("resolved"),
            store.join("e-etc/systemd")
        );
    }
}
