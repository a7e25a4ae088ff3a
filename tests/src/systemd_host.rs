//! A lab host that boots systemd as its PID 1, as a NixOS machine does: in a
//! PID namespace of its own inside its network namespace, over a private
//! root (an overlay of this machine's root, with the host's own `/nix`,
//! `/etc/nix`, `/run` and `/var/lib` bound in), with journald and D-Bus.
//! deployd runs there as `deployd.service` with the settings the NixOS
//! module renders (`Type=notify`, `WatchdogSec`, `Restart=always`).
//!
//! Its cgroups are its own (see `cgroups`).
//!
//! Units get what NixOS gives them, not what Debian does: the manager's
//! default `PATH` is `/run/current-system/sw/bin` alone, so a bare program
//! name in a transient unit fails here as it does on NixOS. (Absolute paths
//! into this machine's `/usr/bin` still resolve: the lab's own plumbing,
//! systemd and D-Bus among it, lives there.)

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cgroups::host_cgroups;
use crate::deployd::{DEPLOYD_CONFIG, DEPLOYD_PORT};
use crate::lab::{wait_for_port, Lab};
use crate::node::Node;

/// Makes the private root and pivots into it, then execs systemd. `$1` is
/// the node's root directory, `$2` the directory of unit files to install
/// (and of tools for `/usr/local/sbin`, under `sbin`), `$3` a directory to
/// bind at `/media/disk` or "".
const BOOT_SCRIPT: &str = r#"set -e
node="$1"; units="$2"; disk="$3"; sys="$node/sysroot"
mkdir -p "$sys" && mount -t tmpfs tmpfs "$sys"
mkdir -p "$sys/upper" "$sys/work" "$sys/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$sys/upper,workdir=$sys/work" "$sys/root"
r="$sys/root"
for pair in nix:/nix etc-nix:/etc/nix run:/run var-lib:/var/lib; do
  mkdir -p "$r${pair#*:}"
  mount --bind "$node/${pair%%:*}" "$r${pair#*:}"
done
mount -t proc proc "$r/proc"
# The host's units are its own, not what this machine enables or generates
# (systemd's own generators stay); early-boot units for a machine's hardware
# and first boot are masked, as in a container.
rm -rf "$r/etc/systemd/system"
mkdir -p "$r/etc/systemd/system" "$r/etc/systemd/system.conf.d"
for unit in /lib/systemd/system/sysinit.target.wants/* systemd-remount-fs.service; do
  case "${unit##*/}" in
    systemd-journald.service|systemd-journal-flush.service) ;;
    *) ln -s /dev/null "$r/etc/systemd/system/${unit##*/}" ;;
  esac
done
for generator in "$r"/usr/lib/systemd/system-generators/*; do
  case "${generator##*/}" in
    systemd-*) ;;
    *) rm -f "$generator" ;;
  esac
done
for unit in "$units"/*.service "$units"/*.target; do
  if [ -e "$unit" ]; then cp "$unit" "$r/etc/systemd/system/"; fi
done
cp "$units"/manager.conf "$r/etc/systemd/system.conf.d/lab.conf"
# An installer's own tools, and the disk of the machine it installs.
if [ -d "$units/sbin" ]; then cp "$units"/sbin/* "$r/usr/local/sbin/"; fi
if [ -n "$disk" ]; then
  mkdir -p "$r/media/disk"
  mount --bind "$disk" "$r/media/disk"
fi
echo "$(basename "$node")" > "$r/etc/hostname"
# What marks a NixOS installation, which switch-to-configuration checks.
: > "$r/etc/NIXOS"
mkdir -p "$r/.oldroot"
cd "$r"
pivot_root . .oldroot
umount -l /.oldroot
exec env -i container=lab /lib/systemd/systemd --system --unit=lab.target
"#;

/// Moves itself into the host's cgroups (`$LAB_CGROUPS`, `:`-separated),
/// then execs its arguments: `unshare --cgroup` then roots the host's cgroup
/// namespace there.
const ENTER_CGROUPS: &str = r#"IFS=:
for dir in $LAB_CGROUPS; do
  echo $$ > "$dir/cgroup.procs" || exit 1
done
exec "$@"
"#;

/// What a node boots with: unit files (`lab.target`, which it boots into,
/// among them), tools for `/usr/local/sbin`, and a disk.
#[derive(Debug, Default)]
pub(crate) struct Boot {
    /// (file name, text) of the units to install.
    pub units: Vec<(String, String)>,
    /// (file name, script) of tools to install.
    pub tools: Vec<(String, String)>,
    /// A directory bound at `/media/disk`.
    pub disk: Option<PathBuf>,
}

/// The target a lab host boots into.
pub(crate) const LAB_TARGET: &str = "[Unit]
Description=deployd lab host
Requires=dbus.socket systemd-journald.socket
After=dbus.socket systemd-journald.socket
AllowIsolate=yes
";

/// What the manager gives every unit: NixOS's `PATH`, which holds nothing
/// on a toy system.
const MANAGER_CONF: &str = "[Manager]
DefaultEnvironment=PATH=/run/current-system/sw/bin
";

/// The unit settings the NixOS module gives `deployd.service`: one file, read
/// by the module and by the lab.
const DEPLOYD_UNIT_JSON: &str = include_str!("../../nixos-module/deployd-unit.json");

/// The module's unit settings (`nixos-module/deployd-unit.json`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleUnit {
    /// `description`.
    pub description: String,
    /// `restartIfChanged`.
    pub restart_if_changed: bool,
    /// `reloadSignal`: the signal that makes deployd re-read its config,
    /// which the module sends with coreutils' `kill` and the lab with this
    /// machine's (see [`deployd_unit`]).
    pub reload_signal: String,
    /// `serviceConfig`, less `ExecStart`.
    pub service_config: serde_json::Map<String, serde_json::Value>,
}

impl ModuleUnit {
    /// The module's settings.
    pub fn load() -> Result<ModuleUnit> {
        serde_json::from_str(DEPLOYD_UNIT_JSON).context("nixos-module/deployd-unit.json")
    }
}

/// `deployd.service` as the NixOS module renders it (NixOS writes
/// `restartIfChanged = false` as `X-RestartIfChanged=false`, and booleans as
/// `true`/`false`), running `exec` with the config at `config`, reloaded by
/// `reloadSignal` sent with `kill` (this machine's: every lab host sees its
/// `/usr/bin`), with the module's `path` (Nix and systemd) as the lab has
/// them.
pub fn deployd_unit(exec: &str, config: &str) -> Result<String> {
    let unit = ModuleUnit::load()?;
    let mut text = format!("[Unit]\nDescription={}\n", unit.description);
    if !unit.restart_if_changed {
        text.push_str("X-RestartIfChanged=false\n");
    }
    text.push_str("\n[Service]\n");
    for (key, value) in &unit.service_config {
        let value = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("{key}={value}\n"));
    }
    text.push_str(&format!(
        "ExecStart={exec} --config {config}\n\
         ExecReload=/usr/bin/kill -{signal} $MAINPID\n\
         Environment=PATH=/usr/bin:/bin\n\
         Environment=HOME=/var/lib/home\n\
         Environment=XDG_CACHE_HOME=/var/lib/home/.cache\n",
        signal = unit.reload_signal,
    ));
    Ok(text)
}

impl Lab {
    /// Boots systemd as PID 1 of every host, with `deployd.service`
    /// installed but not started (it needs its config: see
    /// [`Lab::start_deployd`]), and waits until each says `running`.
    pub(crate) fn boot_systemd_hosts(&mut self) -> Result<()> {
        let names: Vec<String> = self.hosts().iter().map(|host| host.name.clone()).collect();
        raise_inotify_instances(names.len())?;
        let mut booted = Vec::new();
        for name in &names {
            let pid1 = self.spawn_systemd(name)?;
            booted.push(self.set_pid1(name, pid1)?);
        }
        for host in &booted {
            wait_until_running(host, Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Starts systemd as PID 1 of host `name`, with `deployd.service`
    /// installed (running the lab's deployd with the config the lab writes),
    /// and returns its pid (as this machine sees it).
    fn spawn_systemd(&self, name: &str) -> Result<u32> {
        let deployd = deployd_unit(
            &self.deployd_binary()?.display().to_string(),
            DEPLOYD_CONFIG,
        )?;
        let boot = Boot {
            units: vec![
                ("lab.target".into(), LAB_TARGET.into()),
                ("deployd.service".into(), deployd),
            ],
            ..Boot::default()
        };
        self.boot_node(name, &boot)
    }

    /// Starts systemd as PID 1 of node `name`, as `boot` says, and returns
    /// its pid (as this machine sees it).
    pub(crate) fn boot_node(&self, name: &str, boot: &Boot) -> Result<u32> {
        let host = self.node(name)?;
        let units = host.root.join("units");
        if units.exists() {
            std::fs::remove_dir_all(&units)?;
        }
        std::fs::create_dir_all(&units)?;
        std::fs::write(units.join("manager.conf"), MANAGER_CONF)?;
        for (file, text) in &boot.units {
            std::fs::write(units.join(file), text)?;
        }
        if !boot.tools.is_empty() {
            std::fs::create_dir_all(units.join("sbin"))?;
            for (file, text) in &boot.tools {
                let path = units.join("sbin").join(file);
                std::fs::write(&path, text)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        let console = std::fs::File::create(host.root.join("systemd.log"))?;
        let cgroups = host_cgroups(&host.netns)?;
        for dir in &cgroups {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let cgroups: Vec<String> = cgroups
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        // Into the cgroups first: `ip netns exec` mounts a /sys without them.
        let child = Command::new("/bin/sh")
            .args(["-c", ENTER_CGROUPS, "lab-cgroups"])
            .env("LAB_CGROUPS", cgroups.join(":"))
            .args(["ip", "netns", "exec", &host.netns])
            .args(["unshare", "--cgroup", "--pid", "--fork", "--mount", "--uts"])
            .args([
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                BOOT_SCRIPT,
            ])
            .arg("lab-boot")
            .arg(&host.root)
            .arg(&units)
            .arg(boot.disk.as_deref().unwrap_or(Path::new("")))
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0)
            .spawn()
            .with_context(|| format!("booting systemd on {name}"))?;
        wait_for_child(child.id(), Duration::from_secs(10))
            .with_context(|| format!("systemd on {name} did not start"))
    }

    /// (Re)starts `deployd.service` on a host that runs systemd and waits
    /// until deployd answers.
    pub(crate) fn restart_deployd_unit(&self, host: &Node) -> Result<()> {
        let output = host
            .command("systemctl", ["restart", "deployd.service"])
            .output()
            .with_context(|| format!("systemctl on {}", host.name))?;
        if !output.status.success() {
            bail!(
                "systemctl restart deployd.service on {} failed: {} ({})",
                host.name,
                String::from_utf8_lossy(&output.stderr).trim(),
                journal_tail(host)
            );
        }
        wait_for_port((host.address, DEPLOYD_PORT).into(), Duration::from_secs(30)).with_context(
            || {
                format!(
                    "deployd.service on {} did not come up ({})",
                    host.name,
                    journal_tail(host)
                )
            },
        )
    }
}

/// Where the kernel keeps the most inotify instances one user may hold.
const INOTIFY_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// Raises the machine's limit of inotify instances per user, never lowers
/// it: systemd, journald and D-Bus hold a few each on every host, all as
/// root, and the kernel's default of 128 runs out at about 40 hosts.
fn raise_inotify_instances(hosts: usize) -> Result<()> {
    let needed = 128 + 8 * hosts;
    let text = std::fs::read_to_string(INOTIFY_INSTANCES)
        .with_context(|| format!("reading {INOTIFY_INSTANCES}"))?;
    let current: usize = text
        .trim()
        .parse()
        .with_context(|| format!("{INOTIFY_INSTANCES} holds {text:?}"))?;
    if current < needed {
        std::fs::write(INOTIFY_INSTANCES, needed.to_string())
            .with_context(|| format!("raising {INOTIFY_INSTANCES} to {needed}"))?;
    }
    Ok(())
}

/// `deployd.service`'s main pid on a host that runs systemd, as the host
/// sees it; `None` while it does not run.
pub(crate) fn deployd_main_pid(host: &Node) -> Option<u32> {
    let output = host
        .command(
            "systemctl",
            ["show", "-p", "MainPID", "--value", "deployd.service"],
        )
        .output()
        .ok()?;
    let pid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    (pid != 0).then_some(pid)
}

/// The one child of `pid` (what `unshare --fork` made PID 1), once it is there.
fn wait_for_child(pid: u32, timeout: Duration) -> Result<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return child.parse().context("a child pid");
        }
        if Instant::now() >= deadline {
            bail!("process {pid} made no child in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `systemctl is-system-running` says `running`.
pub(crate) fn wait_until_running(host: &Node, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut said = String::new();
    while Instant::now() < deadline {
        if let Ok(output) = host.command("systemctl", ["is-system-running"]).output() {
            said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            match said.as_str() {
                "running" => return Ok(()),
                "degraded" => {
                    let failed = host
                        .command("systemctl", ["--failed", "--no-legend", "--plain"])
                        .output()
                        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                        .unwrap_or_default();
                    bail!("systemd on {} is degraded: {}", host.name, failed.trim());
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "systemd on {} is not running after {timeout:?} (it says {said:?}; {})",
        host.name,
        journal_tail(host)
    )
}

/// The last lines of the host's journal, for error messages.
pub(crate) fn journal_tail(host: &Node) -> String {
    host.command("journalctl", ["--no-pager", "-n", "15"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).replace('\n', " | "))
        .unwrap_or_else(|error| format!("no journal: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_unit_reloads_deployd_with_the_modules_signal() {
        let unit = ModuleUnit::load().expect("the module's unit");
        assert_eq!(unit.reload_signal, "HUP");
        let text = deployd_unit(
            "/nix/store/x-deployd/bin/deployd",
            "/etc/deployd/config.toml",
        )
        .expect("unit");
        assert!(
            text.contains("ExecReload=/usr/bin/kill -HUP $MAINPID\n"),
            "{text}"
        );
    }
}
