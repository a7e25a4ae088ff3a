//! A lab node: the builder or a host. Each has its own network namespace and,
//! for every command run on it, a private mount namespace in which the node's
//! own directories are bound over `/nix`, `/etc/nix`, `/run` and `/var/lib`.
//! So a node has its own Nix store and database, system profile,
//! `nix.conf`, `/run/current-system` and state, like a machine of its own.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result};

use crate::run::{run_labelled, DEFAULT_TIMEOUT};

/// The directories bound over the node's view of the file system:
/// (directory under the node's root, mount point).
pub const BOUND_DIRS: [(&str, &str); 4] = [
    ("nix", "/nix"),
    ("etc-nix", "/etc/nix"),
    ("run", "/run"),
    ("var-lib", "/var/lib"),
];

/// Binds the node's directories (making a mount point the machine lacks,
/// such as `/etc/nix` before Nix is configured) and its `os-release`, then
/// runs the command. `$1` is the node's root directory, the rest is the
/// command.
const MOUNT_SCRIPT: &str = r#"root="$1"; shift
for pair in nix:/nix etc-nix:/etc/nix run:/run var-lib:/var/lib; do
  [ -d "${pair#*:}" ] || mkdir -p "${pair#*:}" || exit 126
  mount --bind "$root/${pair%%:*}" "${pair#*:}" || exit 126
done
if [ -f "$root/os-release" ]; then
  mount --bind "$root/os-release" /etc/os-release || exit 126
fi
exec "$@""#;

/// The `os-release` of a node without systemd: NixOS's ID, by which
/// `switch-to-configuration` knows a NixOS installation where there is no
/// `/etc/NIXOS` (a node without systemd shares this machine's `/etc`, so it
/// cannot have one of its own; a node with systemd has `/etc/NIXOS`).
const OS_RELEASE: &str = "NAME=NixOS\nID=nixos\n";

/// A machine of the lab.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Its host name (the flake's `nixosConfigurations` attribute).
    pub name: String,
    /// Its address on the lab's bridge.
    pub address: Ipv4Addr,
    /// Its network namespace.
    pub netns: String,
    /// The directory holding its private `/nix`, `/etc/nix`, `/run`, `/var/lib`.
    pub root: PathBuf,
    /// When the host boots systemd ([`crate::Lab::boot_systemd`]): its PID 1,
    /// as this namespace sees it. Commands then enter its namespaces.
    #[serde(default)]
    pub pid1: Option<u32>,
}

impl Node {
    /// Creates the node's directories (its namespace is made by `net`).
    pub fn prepare_dirs(&self) -> Result<()> {
        for (dir, _) in BOUND_DIRS {
            let path = self.root.join(dir);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        std::fs::create_dir_all(self.root.join("var-lib/home"))?;
        std::fs::write(self.root.join("os-release"), OS_RELEASE)?;
        Ok(())
    }

    /// Where a path seen on the node (`/nix/...`, `/run/...`, `/var/lib/...`,
    /// `/etc/nix/...`) lives, seen from outside.
    pub fn outside(&self, inside: &str) -> PathBuf {
        for (dir, mount) in BOUND_DIRS {
            if let Some(rest) = inside.strip_prefix(mount) {
                if rest.is_empty() || rest.starts_with('/') {
                    return self.root.join(dir).join(rest.trim_start_matches('/'));
                }
            }
        }
        PathBuf::from(inside)
    }

    /// The argv that runs `program args` with the node's mounts, for a
    /// process already inside the node's network namespace.
    pub fn mounted_argv<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv: Vec<OsString> = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            MOUNT_SCRIPT,
            "lab-node",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        argv.push(self.root.clone().into_os_string());
        argv.push(program.as_ref().to_owned());
        argv.extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        argv
    }

    /// A command that runs `program args` on the node: in its network
    /// namespace, with its mounts, its home and no inherited Nix settings.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = match self.pid1 {
            Some(pid1) => {
                let mut command = Command::new("nsenter");
                command
                    .args(["--target", &pid1.to_string()])
                    .args(["--mount", "--pid", "--net", "--uts", "--"])
                    .arg(program)
                    .args(args);
                command
            }
            None => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &self.netns])
                    .args(self.mounted_argv(program, args));
                command
            }
        };
        node_environment(&mut command);
        command
    }

    /// Runs `argv` on the node; fails unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        let (program, args) = argv.split_first().context("an empty command")?;
        let label = format!("`{}` on {}", argv.join(" "), self.name);
        run_labelled(&mut self.command(program, args), &label, DEFAULT_TIMEOUT)
    }

    /// Runs a shell script on the node; fails unless it exits 0.
    pub fn sh(&self, script: &str) -> Result<Output> {
        self.run(&["/bin/sh", "-c", script])
    }
}

/// The environment every node command gets: a home of the node's own (Nix
/// keeps caches there) and none of the caller's Nix settings.
pub fn node_environment(command: &mut Command) {
    command
        .env("HOME", "/var/lib/home")
        .env("XDG_CACHE_HOME", "/var/lib/home/.cache")
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env_remove("NIX_REMOTE")
        .env_remove("NIX_CONF_DIR")
        .env_remove("NIX_PATH");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            pid1: None,
            name: "sambirano".into(),
            address: Ipv4Addr::new(198, 18, 7, 10),
            netns: "dl7-sambirano".into(),
            root: PathBuf::from("/lab/hosts/sambirano"),
        }
    }

    #[test]
    fn inside_paths_map_to_the_node_directories() {
        let node = node();
        assert_eq!(
            node.outside("/run/current-system"),
            PathBuf::from("/lab/hosts/sambirano/run/current-system")
        );
        assert_eq!(
            node.outside("/nix/var/nix/profiles/system"),
            PathBuf::from("/lab/hosts/sambirano/nix/var/nix/profiles/system")
        );
        assert_eq!(
            node.outside("/var/lib"),
            PathBuf::from("/lab/hosts/sambirano/var-lib/")
        );
        assert_eq!(node.outside("/nixos"), PathBuf::from("/nixos"));
    }

    #[test]
    fn the_command_enters_the_namespace_then_mounts() {
        let command = node().command("nix-store", ["--version"]);
        let argv: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(command.get_program(), "ip");
        assert_eq!(&argv[..3], ["netns", "exec", "dl7-sambirano"]);
        assert_eq!(
            &argv[3..8],
            ["unshare", "--mount", "--propagation", "private", "--"]
        );
        assert_eq!(
            &argv[argv.len() - 3..],
            ["/lab/hosts/sambirano", "nix-store", "--version"]
        );
    }
}
