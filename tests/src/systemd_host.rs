//! A lab host that boots systemd as its PID 1, as a NixOS machine does: in a
//! PID namespace of its own inside its network namespace, over a private
//! root (an overlay of this machine's root, with the host's own `/nix`,
//! `/etc/nix`, `/run` and `/var/lib` bound in), with journald and D-Bus.
//! deployd runs there as `deployd.service` with the settings the NixOS
//! module renders (`Type=notify`, `WatchdogSec`, `Restart=always`).
//!
//! Units get what NixOS gives them, not what Debian does: the manager's
//! default `PATH` is `/run/current-system/sw/bin` alone, so a bare program
//! name in a transient unit fails here as it does on NixOS. (Absolute paths
//! into this machine's `/usr/bin` still resolve: the lab's own plumbing,
//! systemd and D-Bus among it, lives there.)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::deployd::{DEPLOYD_CONFIG, DEPLOYD_PORT};
use crate::lab::{wait_for_port, Lab};
use crate::node::Node;

/// Makes the private root and pivots into it, then execs systemd. `$1` is
/// the node's root directory, `$2` the directory of unit files to install.
const BOOT_SCRIPT: &str = r#"set -e
node="$1"; units="$2"; sys=/run/lab-sysroot-$$
mkdir -p "$sys" && mount -t tmpfs tmpfs "$sys"
mkdir -p "$sys/upper" "$sys/work" "$sys/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$sys/upper,workdir=$sys/work" "$sys/root"
r="$sys/root"
for pair in nix:/nix etc-nix:/etc/nix run:/run var-lib:/var/lib; do
  mkdir -p "$r${pair#*:}"
  mount --bind "$node/${pair%%:*}" "$r${pair#*:}"
done
mount -t proc proc "$r/proc"
mkdir -p "$r/etc/systemd/system" "$r/etc/systemd/system.conf.d"
cp "$units"/*.service "$units"/*.target "$r/etc/systemd/system/"
cp "$units"/manager.conf "$r/etc/systemd/system.conf.d/lab.conf"
echo "$(basename "$node")" > "$r/etc/hostname"
mkdir -p "$r/.oldroot"
cd "$r"
pivot_root . .oldroot
umount -l /.oldroot
exec env -i container=lab /lib/systemd/systemd --system --unit=lab.target
"#;

/// The target a lab host boots into.
const LAB_TARGET: &str = "[Unit]
Description=deployd lab host
Requires=dbus.socket systemd-journald.socket
Wants=deployd.service
After=dbus.socket systemd-journald.socket
AllowIsolate=yes
";

/// What the manager gives every unit: NixOS's `PATH`, which holds nothing
/// on a toy system.
const MANAGER_CONF: &str = "[Manager]
DefaultEnvironment=PATH=/run/current-system/sw/bin
";

/// `deployd.service` as the NixOS module renders it, with the module's
/// `path` (Nix and systemd) as the lab has them.
fn deployd_unit(deployd: &Path) -> String {
    format!(
        "[Unit]
Description=deployd: signed, pull-based NixOS deploys

[Service]
Type=notify
NotifyAccess=main
ExecStart={} --config {DEPLOYD_CONFIG}
Restart=always
RestartSec=2
WatchdogSec=60
StateDirectory=deployd
StateDirectoryMode=0700
LockPersonality=true
RestrictRealtime=true
UMask=0077
Environment=PATH=/usr/bin:/bin
Environment=HOME=/var/lib/home
Environment=XDG_CACHE_HOME=/var/lib/home/.cache
",
        deployd.display()
    )
}

impl Lab {
    /// Boots systemd as PID 1 of host `name`, with deployd as
    /// `deployd.service` (its config must be written first), and waits
    /// until systemd says `running` and deployd answers. Returns the host
    /// as commands must now reach it.
    pub fn boot_systemd(&mut self, name: &str) -> Result<Node> {
        let host = self.node(name)?.clone();
        let units = host.root.join("units");
        std::fs::create_dir_all(&units)?;
        std::fs::write(units.join("lab.target"), LAB_TARGET)?;
        std::fs::write(units.join("manager.conf"), MANAGER_CONF)?;
        std::fs::write(
            units.join("deployd.service"),
            deployd_unit(&self.deployd_binary()?),
        )?;
        let console = std::fs::File::create(host.root.join("systemd.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &host.netns])
            .args(["unshare", "--pid", "--fork", "--mount", "--uts"])
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
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0)
            .spawn()
            .with_context(|| format!("booting systemd on {name}"))?;
        let pid1 = wait_for_child(child.id(), Duration::from_secs(10))
            .with_context(|| format!("systemd on {name} did not start"))?;
        let host = self.set_pid1(name, pid1)?;
        wait_until_running(&host, Duration::from_secs(60))?;
        wait_for_port((host.address, DEPLOYD_PORT).into(), Duration::from_secs(30)).with_context(
            || {
                format!(
                    "deployd.service on {name} did not come up ({})",
                    journal_tail(&host)
                )
            },
        )?;
        Ok(host)
    }
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
fn wait_until_running(host: &Node, timeout: Duration) -> Result<()> {
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
fn journal_tail(host: &Node) -> String {
    host.command("journalctl", ["--no-pager", "-n", "15"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).replace('\n', " | "))
        .unwrap_or_else(|error| format!("no journal: {error}"))
}
