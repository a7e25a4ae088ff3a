//! `push install HOST --fetch-hardware-config root@ADDR`: the new
//! machine's `hardware-configuration.nix`, as `nixos-generate-config` sees
//! it from the installer, written where HOST's system imports it
//! (`hosts/HOST/hardware-configuration.nix` in the flake, or the host's
//! `hardware_config` in push.toml). Nothing is committed: the build uses
//! the committed revision, never the work tree, so the operator reviews,
//! adds and commits it first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_protocol::HostName;

use super::target::{on_target, quoted, run_keeping_tail, InstallRoot, SshDestination};
use crate::inventory::HostEntry;

/// How long `nixos-generate-config` may take.
const GENERATE_TIMEOUT: Duration = Duration::from_secs(120);

/// The command, run on the new machine: the configuration on stdout,
/// nothing written there. An unmounted ROOT is refused: the configuration
/// would lack the new machine's file systems.
pub fn generate_script(root: &InstallRoot) -> String {
    let root = quoted(root.as_str());
    format!(
        "if command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q {root}; then \
         echo {root}' is not a mount point: mount the file systems of the new machine there first, so that nixos-generate-config sees them' >&2; exit 1; fi; \
         nixos-generate-config --show-hardware-config --root {root}"
    )
}

/// Where HOST's hardware configuration goes, relative to the flake's
/// directory: the inventory's `hardware_config`, else the convention.
pub fn relative_path(host: &HostName, entry: &HostEntry) -> Result<PathBuf> {
    let Some(path) = &entry.hardware_config else {
        return Ok(Path::new("hosts")
            .join(host.as_str())
            .join("hardware-configuration.nix"));
    };
    let inside = path
        .components()
        .all(|part| matches!(part, std::path::Component::Normal(_)));
    if !inside || path.as_os_str().is_empty() {
        bail!(
            "hosts.{host}.hardware_config = {:?} must be a path inside the flake's directory (relative, without ..)",
            path.display().to_string()
        );
    }
    Ok(path.clone())
}

/// Refuses output that is not a NixOS module: empty, or not a function
/// (`{ config, lib, ... }: ...`) once its leading comments are skipped.
pub fn check_output(text: &str) -> Result<(), String> {
    let code = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    match code {
        None => Err("it printed no configuration".into()),
        Some(first) if first.starts_with('{') && text.contains("}:") => Ok(()),
        Some(first) => Err(format!(
            "its output does not look like a NixOS module (a Nix function); it begins with {:?}",
            first.chars().take(60).collect::<String>()
        )),
    }
}

/// What became of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// It was not there.
    Created,
    /// It was there with other contents.
    Replaced,
    /// It was there with the same contents.
    Unchanged,
}

/// Writes `text` to `path` (directories made as needed), whole or not at
/// all: a temporary file beside it, renamed over it.
pub fn write(path: &Path, text: &str) -> Result<Written> {
    let before = std::fs::read_to_string(path).ok();
    if before.as_deref() == Some(text) {
        return Ok(Written::Unchanged);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = path.with_extension("nix.tmp");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(if before.is_some() {
        Written::Replaced
    } else {
        Written::Created
    })
}

/// Fetches the hardware configuration and writes it.
pub async fn fetch(
    destination: &SshDestination,
    root: &InstallRoot,
    host: &HostName,
    path: &Path,
) -> Result<()> {
    let address = destination.address();
    eprintln!(
        "push: asking {address} for its hardware configuration (nixos-generate-config, {root})"
    );
    let invocation = on_target(destination, &generate_script(root), GENERATE_TIMEOUT);
    let generated = run_keeping_tail(&invocation, |_| {})
        .await
        .map_err(|failure| {
            // The machine's trouble (unreachable, or the command failed there).
            crate::exit::HostProblem(format!(
                "nixos-generate-config failed on {address}: {failure}; nothing was written"
            ))
        })?;
    check_output(&generated.stdout).map_err(|why| {
        anyhow::anyhow!("nixos-generate-config on {address}: {why}; nothing was written")
    })?;
    let written = write(path, &generated.stdout)?;
    let shown = path.display();
    match written {
        Written::Created => eprintln!("push: wrote {shown}"),
        Written::Replaced => eprintln!("push: replaced {shown} (see git diff)"),
        Written::Unchanged => eprintln!("push: {shown} is unchanged"),
    }
    eprintln!(
        "push: review it, make {host}'s system import it, git add and commit it: push install builds the committed revision, never the work tree"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERATED: &str =
        "# Do not modify this file!  It was generated by nixos-generate-config\n\
        # and may be overwritten by future invocations.\n\
        { config, lib, pkgs, modulesPath, ... }:\n\n{\n  imports = [ ];\n}\n";

    #[test]
    fn the_command_and_the_path() {
        let root: InstallRoot = "/mnt".parse().expect("root");
        let script = generate_script(&root);
        crate::install::target::assert_parses(&script);
        assert!(
            script.starts_with("if command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q '/mnt'; then echo '/mnt'' is not a mount point"),
            "{script}"
        );
        assert!(
            script.ends_with("; nixos-generate-config --show-hardware-config --root '/mnt'"),
            "{script}"
        );
        let host: HostName = "fresh".parse().expect("host");
        assert_eq!(
            relative_path(&host, &HostEntry::default()).expect("convention"),
            Path::new("hosts/fresh/hardware-configuration.nix")
        );
        let entry = HostEntry {
            hardware_config: Some("machines/fresh/hw.nix".into()),
            ..HostEntry::default()
        };
        assert_eq!(
            relative_path(&host, &entry).expect("given"),
            Path::new("machines/fresh/hw.nix")
        );
        for bad in ["/etc/nixos/hw.nix", "../elsewhere.nix", ""] {
            let entry = HostEntry {
                hardware_config: Some(bad.into()),
                ..HostEntry::default()
            };
            assert!(relative_path(&host, &entry).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_nix_function_is_written() {
        assert_eq!(check_output(GENERATED), Ok(()));
        assert!(check_output("").is_err());
        assert!(check_output("# only a comment\n\n").is_err());
        let error =
            check_output("bash: nixos-generate-config: command not found\n").expect_err("not nix");
        assert!(error.contains("bash: nixos-generate-config"), "{error}");
    }

    #[test]
    fn writes_whole_and_says_what_changed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hosts/fresh/hardware-configuration.nix");
        assert_eq!(write(&path, GENERATED).expect("create"), Written::Created);
        assert_eq!(write(&path, GENERATED).expect("same"), Written::Unchanged);
        assert_eq!(
            write(&path, "{ ... }: { }\n").expect("replace"),
            Written::Replaced
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{ ... }: { }\n"
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }
}
