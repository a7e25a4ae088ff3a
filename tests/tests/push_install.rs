//! `push install` against new machines booted from the lab's stand-in NixOS
//! installer (a real sshd, an empty store, the disk mounted at `/mnt`):
//! the hardware configuration fetched into the flake and used by the
//! build, every refusal made before anything is written on the machine,
//! the install itself (pulled from the fleet's cache, or copied over SSH),
//! the machine rebooted from its disk running the installed deployd, and
//! the next revision deployed to it at once.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use deployd_lab::{NewMachine, SystemDeployd};
use support::deployd::status;
use support::push::{system_at, text, PushLab};
use support::wait_until;

/// A refusal: exit status 2, and its one line, the last, says `expected`.
fn assert_refused(output: &Output, expected: &str) {
    let (stdout, stderr) = text(output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("push: ") && last.contains(expected),
        "{expected:?} not in the last line of: {stderr}"
    );
}

/// Every file on the machine's disk (none, before an install).
fn files_on(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the disk").flatten() {
        let path = entry.path();
        found.push(path.display().to_string());
        if entry.file_type().expect("file type").is_dir() {
            found.extend(files_on(&path));
        }
    }
    found
}

/// The system the disk's system profile points to, and the generation.
fn installed_profile(disk: &Path) -> (String, String) {
    let profiles = disk.join("nix/var/nix/profiles");
    let generation = std::fs::read_link(profiles.join("system")).expect("system profile");
    let system = std::fs::read_link(profiles.join(&generation)).expect("generation");
    (
        generation.to_string_lossy().into_owned(),
        system.to_string_lossy().into_owned(),
    )
}

/// Adds `machine`'s host to the flake with deployd enabled (trusting the
/// fleet's key and cache) and to push's inventory.
fn add_to_fleet(fleet: &mut PushLab, machines: &[&NewMachine]) -> String {
    let exec = fleet
        .lab
        .deployd_binary()
        .expect("deployd")
        .display()
        .to_string();
    let cache_url = fleet.lab.cache_url();
    let cache_key = fleet.lab.cache_public_key().expect("cache key");
    let names: Vec<String> = machines.iter().map(|m| m.node.name.clone()).collect();
    let public_key = fleet.public_key.clone();
    let rev = fleet
        .lab
        .flake_mut()
        .commit("New hosts", move |settings| {
            settings.hosts.extend(names.iter().cloned());
            settings.system_deployd = SystemDeployd {
                hosts: names,
                exec,
                trusted_keys: vec![public_key],
                substituters: vec![cache_url],
                trusted_public_keys: vec![cache_key],
            };
        })
        .expect("commit");
    fleet.lab.write_push_inventory("").expect("inventory");
    rev
}

#[test]
fn push_install_gives_a_new_machine_a_first_generation_the_fleet_deploys_to() {
    let mut fleet = PushLab::up(1);
    let machine = fleet.lab.add_new_machine("tsingy").expect("new machine");
    add_to_fleet(&mut fleet, &[&machine]);
    let target = machine.ssh.destination.clone();
    let env = [("NIX_SSHOPTS", machine.ssh.nix_sshopts.as_str())];
    let install = |args: &[&str]| {
        let mut all = vec!["install"];
        all.extend_from_slice(args);
        fleet.push_with(&all, &env)
    };

    // Refusals, each before anything is written on the machine.
    assert_refused(
        &install(&["tsingy", "--target", &target]),
        "is not a mount point",
    );
    fleet.lab.mount_disk(&machine).expect("mount the disk");
    assert_refused(
        &install(&["sambirano", "--target", &target]),
        "does not enable services.deployd",
    );
    let nobody = format!("root@{}", fleet.lab.state().slot.address(250));
    // A machine that cannot be reached is the machine's trouble (exit 1),
    // never bad input.
    let unreachable = install(&["tsingy", "--target", &nobody]);
    let (stdout, stderr) = text(&unreachable);
    assert_eq!(unreachable.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("cannot reach"),
        "{stderr}"
    );
    assert_refused(
        &install(&[
            "tsingy",
            "--target",
            &target,
            "0123456789abcdef0123456789abcdef01234567",
        ]),
        "no revision",
    );
    assert_eq!(files_on(&machine.disk), Vec::<String>::new());

    // The hardware configuration, into the path the flake imports.
    let output = install(&["tsingy", "--fetch-hardware-config", &target]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let hardware = fleet
        .lab
        .flake()
        .dir()
        .join("hosts/tsingy/hardware-configuration.nix");
    let config = std::fs::read_to_string(&hardware).expect("hardware-configuration.nix");
    assert!(config.contains("fileSystems.\"/\""), "{config}");
    let device = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("{ device = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("a device")
        .to_owned();
    assert_eq!(files_on(&machine.disk), Vec::<String>::new());
    let rev = fleet
        .lab
        .flake_mut()
        .commit("tsingy's hardware configuration", |_| {})
        .expect("commit");
    let expected = system_at(fleet.lab.flake().dir(), &rev, "tsingy");

    // The install, waiting for the machine to come back from its disk.
    let child = fleet.spawn_push_with(
        &[
            "install",
            "tsingy",
            "--target",
            &target,
            "--wait",
            &rev[..12],
        ],
        &env,
    );
    let boot_entry = machine.disk.join("var/lib/lab/boot-default");
    assert!(
        wait_until(Duration::from_secs(300), || boot_entry.exists()),
        "nixos-install never made the boot entry"
    );
    let host = fleet.lab.reboot_from_disk(&machine).expect("reboot");
    let output = child.wait_with_output().expect("push install");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let said = format!("{stdout}\n{stderr}");
    assert!(said.contains("pulling"), "{said}");
    assert!(said.contains("installation finished!"), "{said}");
    assert!(said.contains("push --host tsingy"), "{said}");

    // Generation 1 of exactly that revision, with the fetched hardware.
    assert_eq!(
        installed_profile(&machine.disk),
        ("system-1-link".to_owned(), expected.clone())
    );
    let fstab = machine
        .read_on_disk(&format!("{expected}/etc/fstab"))
        .expect("the installed system's fstab");
    assert_eq!(
        fstab,
        format!("{device} / {} defaults 0 0\n", fstab_type(&config))
    );

    // The booted machine runs the installed deployd, on the installed system.
    assert_eq!(host.current_system().as_deref(), Some(expected.as_str()));
    let status = status(&fleet.lab, &host);
    assert_eq!(status.current_system.as_deref(), Some(expected.as_str()));

    // It trusts the fleet's key and cache: the next revision deploys at once.
    let next = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let output = fleet.push(&["--host", "tsingy", &next]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let next_system = system_at(fleet.lab.flake().dir(), &next, "tsingy");
    assert_eq!(host.current_system(), Some(next_system.clone()));
    assert_eq!(
        installed_profile(&machine.disk),
        ("system-2-link".to_owned(), next_system)
    );
}

/// The file system type the hardware configuration gives `/`.
fn fstab_type(config: &str) -> String {
    config
        .lines()
        .find_map(|line| line.trim().strip_prefix("fsType = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("an fsType")
        .to_owned()
}

#[test]
fn push_install_copies_over_ssh_when_told_to() {
    let mut fleet = PushLab::up(1);
    let machine = fleet.lab.add_new_machine("tsingy").expect("new machine");
    let rev = add_to_fleet(&mut fleet, &[&machine]);
    fleet.lab.mount_disk(&machine).expect("mount the disk");
    let env = [("NIX_SSHOPTS", machine.ssh.nix_sshopts.as_str())];
    let output = fleet.push_with(
        &[
            "install",
            "tsingy",
            "--target",
            &machine.ssh.destination,
            "--copy",
        ],
        &env,
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let said = format!("{stdout}\n{stderr}");
    assert!(said.contains("copying"), "{said}");
    assert!(!said.contains("pulling"), "{said}");
    assert!(said.contains("installation finished!"), "{said}");
    let expected = system_at(fleet.lab.flake().dir(), &rev, "tsingy");
    assert_eq!(
        installed_profile(&machine.disk),
        ("system-1-link".to_owned(), expected.clone())
    );
    // Straight onto the disk: the installer's own store stayed empty.
    let live_store = machine.node.outside("/nix/store");
    let in_live_store: Vec<String> = std::fs::read_dir(&live_store)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(in_live_store, Vec::<String>::new());
}
