//! Cargo run as in Nix's build sandbox, as far as native inputs go: it sees
//! the C compiler and C library (nixpkgs' stdenv) and, of the inputs below,
//! only those the package declares.
//!
//! Each nixpkgs input the harness knows is mapped to what provides it on a
//! Debian machine: its pkg-config modules and its files (headers, link
//! libraries, programs). pkg-config finds only the declared inputs' modules
//! (`PKG_CONFIG_LIBDIR` is a directory of links to their `.pc` files). The
//! other inputs' files are hidden in a private mount namespace: an overlay
//! on each of their directories whose top layer has a whiteout for each of
//! them, on a tmpfs of the namespace's own, so nothing outlives it. The
//! namespace has no network; the environment has the toolchain and the
//! build's own directories, nothing else (no `OPENSSL_DIR` and kin).
//!
//! Why hiding suffices: openssl-sys 0.9 finds OpenSSL on Linux through
//! pkg-config alone (its build script probes well-known directories on
//! macOS only) unless `OPENSSL_DIR` or `OPENSSL_LIB_DIR` and
//! `OPENSSL_INCLUDE_DIR` are set; libz-sys links a system zlib only when
//! the compiler finds `zlib.h` and `-lz`, and otherwise builds its own, as
//! in the sandbox.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_lab::run::{output_within, run_within};

use super::source::{cargo, BuildTop};

/// What a nixpkgs input provides on this machine.
struct Provision {
    /// Its nixpkgs name.
    name: &'static str,
    /// Its pkg-config modules (`openssl.pc` requires the other two).
    modules: &'static [&'static str],
    /// Its files; `{multiarch}` stands for the C compiler's target
    /// (`x86_64-linux-gnu`). The first one must exist when it is declared.
    files: &'static [&'static str],
    /// The Debian package that has them.
    debian: &'static str,
}

/// Every input the harness knows: those the package declares, and those it
/// might need without declaring (the C libraries under its crates).
const PROVISIONS: &[Provision] = &[
    Provision {
        name: "pkg-config",
        modules: &[],
        files: &[
            "/usr/bin/pkg-config",
            "/usr/bin/pkgconf",
            "/usr/bin/{multiarch}-pkg-config",
            "/usr/bin/{multiarch}-pkgconf",
        ],
        debian: "pkg-config",
    },
    Provision {
        name: "openssl",
        modules: &["openssl", "libssl", "libcrypto"],
        files: &[
            "/usr/include/openssl",
            "/usr/include/{multiarch}/openssl",
            "/usr/lib/{multiarch}/libssl.so",
            "/usr/lib/{multiarch}/libssl.a",
            "/usr/lib/{multiarch}/libcrypto.so",
            "/usr/lib/{multiarch}/libcrypto.a",
        ],
        debian: "libssl-dev",
    },
    Provision {
        name: "zlib",
        modules: &["zlib"],
        files: &[
            "/usr/include/zlib.h",
            "/usr/include/zconf.h",
            "/usr/lib/{multiarch}/libz.so",
            "/usr/lib/{multiarch}/libz.a",
        ],
        debian: "zlib1g-dev",
    },
    Provision {
        name: "libssh2",
        modules: &["libssh2"],
        files: &[
            "/usr/include/libssh2.h",
            "/usr/include/libssh2_publickey.h",
            "/usr/include/libssh2_sftp.h",
            "/usr/lib/{multiarch}/libssh2.so",
            "/usr/lib/{multiarch}/libssh2.a",
        ],
        debian: "libssh2-1-dev",
    },
    Provision {
        name: "libgit2",
        modules: &["libgit2"],
        files: &[
            "/usr/include/git2.h",
            "/usr/include/git2",
            "/usr/lib/{multiarch}/libgit2.so",
            "/usr/lib/{multiarch}/libgit2.a",
        ],
        debian: "libgit2-dev",
    },
];

/// Runs in the new namespace: mounts a tmpfs on the layers' directory,
/// makes a whiteout there for every hidden file, lays each layer over its
/// directory, then runs the command.
const HIDE: &str = r#"set -eu
layers=$1 directories=$2 hidden=$3
shift 3
mount -t tmpfs sandbox-layers "$layers"
for path in $hidden; do
  mkdir -p "$layers$(dirname "$path")"
  mknod "$layers$path" c 0 0
done
for directory in $directories; do
  mount -t overlay sandbox -o "lowerdir=$layers$directory:$directory" "$directory"
done
exec "$@"
"#;

/// A build environment that sees only the declared native inputs.
pub struct Sandbox {
    /// The `.pc` files of the declared inputs' modules.
    modules: Vec<PathBuf>,
    /// The files of the inputs not declared (those that exist here).
    hidden: Vec<PathBuf>,
}

impl Sandbox {
    /// A sandbox for `declared`, by nixpkgs name. Fails on an input the
    /// harness cannot map, or a declared one this machine lacks.
    pub fn new(declared: &BTreeSet<String>) -> Result<Sandbox> {
        for name in declared {
            if !PROVISIONS.iter().any(|provision| provision.name == name) {
                bail!(
                    "the package declares {name}, which this harness cannot map: \
                     add it to PROVISIONS"
                );
            }
        }
        let multiarch = multiarch()?;
        let search = pkg_config_search_path()?;
        let mut sandbox = Sandbox {
            modules: Vec::new(),
            hidden: Vec::new(),
        };
        for provision in PROVISIONS {
            let files: Vec<PathBuf> = provision
                .files
                .iter()
                .map(|file| PathBuf::from(file.replace("{multiarch}", &multiarch)))
                .collect();
            if declared.contains(provision.name) {
                if !files[0].exists() {
                    bail!(
                        "{} is declared but {} is missing: install {}",
                        provision.name,
                        files[0].display(),
                        provision.debian
                    );
                }
                for module in provision.modules {
                    let pc = search
                        .iter()
                        .map(|dir| dir.join(format!("{module}.pc")))
                        .find(|pc| pc.exists())
                        .with_context(|| {
                            format!(
                                "{} is declared but pkg-config has no {module}: install {}",
                                provision.name, provision.debian
                            )
                        })?;
                    sandbox.modules.push(pc);
                }
            } else {
                sandbox.hidden.extend(
                    files
                        .into_iter()
                        .filter(|file| file.exists() || file.is_symlink()),
                );
            }
        }
        Ok(sandbox)
    }

    /// The files it hides.
    pub fn hidden(&self) -> &[PathBuf] {
        &self.hidden
    }

    /// Runs `cargo ARGS` in `top`'s source, in the sandbox; returns its
    /// output whatever its status.
    pub fn cargo(&self, top: &BuildTop, args: &[&str], timeout: Duration) -> Result<Output> {
        let pkg_config = top.path().join("pkgconfig");
        let layers = top.path().join("layers");
        let home = top.path().join("home");
        let tmp = top.path().join("tmp");
        for dir in [&pkg_config, &layers, &home, &tmp] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for pc in &self.modules {
            let link = pkg_config.join(pc.file_name().context("a .pc file name")?);
            if !link.is_symlink() {
                std::os::unix::fs::symlink(pc, &link).context("linking a .pc file")?;
            }
        }
        let cargo = cargo();
        let toolchain = cargo.parent().context("the toolchain's bin directory")?;
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--net", "--propagation", "private", "--"])
            .args(["sh", "-c", HIDE, "sandbox"])
            .arg(&layers)
            .arg(words(&directories(&self.hidden)))
            .arg(words(&self.hidden))
            .arg(&cargo)
            .args(args)
            .current_dir(top.source())
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", toolchain.display()))
            .env("HOME", &home)
            .env("CARGO_HOME", home.join(".cargo"))
            .env("TMPDIR", &tmp)
            .env("PKG_CONFIG_LIBDIR", &pkg_config)
            .env("CARGO_TERM_COLOR", "never");
        output_within(&mut command, timeout)
    }
}

/// The fewest directories whose overlays hide every path of `hidden`:
/// their parents, less those under another one.
fn directories(hidden: &[PathBuf]) -> Vec<PathBuf> {
    let parents: BTreeSet<&Path> = hidden.iter().filter_map(|path| path.parent()).collect();
    parents
        .iter()
        .filter(|dir| {
            !parents
                .iter()
                .any(|other| other != *dir && dir.starts_with(other))
        })
        .map(|dir| dir.to_path_buf())
        .collect()
}

/// Paths as one space-separated word (system paths have no spaces).
fn words(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The C compiler's multiarch target, `x86_64-linux-gnu` on a PC.
fn multiarch() -> Result<String> {
    let output = run_within(
        Command::new("cc").arg("-dumpmachine"),
        Duration::from_secs(30),
    )?;
    Ok(String::from_utf8(output.stdout)
        .context("cc -dumpmachine")?
        .trim()
        .to_owned())
}

/// Where pkg-config looks by default.
fn pkg_config_search_path() -> Result<Vec<PathBuf>> {
    let output = run_within(
        Command::new("pkg-config").args(["--variable", "pc_path", "pkg-config"]),
        Duration::from_secs(30),
    )?;
    Ok(String::from_utf8(output.stdout)
        .context("pkg-config's search path")?
        .trim()
        .split(':')
        .map(PathBuf::from)
        .collect())
}
