//! A small fleet for tests of the real `push` binary: a git repository
//! holding a flake whose `nixosConfigurations.<host>` are tiny derivations
//! that build in a second (no nixpkgs), a push.toml naming the hosts, and a
//! deploy key. Hosts are [`super::fake_host::FakeHost`]s or addresses
//! where nothing listens; built systems are copied to a file cache of the
//! test's own, where push finds them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deployd_protocol::SecretKey;

/// Runs `git ARGS` in `dir` as a person would, with an author and no
/// signing; fails the test if git does.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = super::run(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args),
    );
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The fleet's repository and what push needs around it.
pub struct Fleet {
    /// Holds the repository (`repo/`), the cache, push's state.
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// A repository whose flake defines `hosts`, committed; push.toml (with
    /// `inventory` after `[defaults]`'s `copy_to`) and the deploy key
    /// `keys/ops.secret` are written in it, not committed.
    pub fn new(hosts: &[&str], inventory: &str) -> Fleet {
        let fleet = Fleet {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let repo = fleet.repo();
        std::fs::create_dir_all(repo.join("hosts")).expect("repo");
        std::fs::create_dir_all(repo.join("keys")).expect("keys");
        std::fs::write(repo.join("flake.nix"), flake_nix(hosts)).expect("flake.nix");
        std::fs::write(repo.join("hosts/common.nix"), "{ }\n").expect("hosts");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "fleet"]);
        std::fs::write(
            repo.join("push.toml"),
            format!(
                "[defaults]\nkey_file = \"keys/ops.secret\"\ncopy_to = \"file://{}\"\n{inventory}",
                fleet.dir.path().join("cache").display()
            ),
        )
        .expect("push.toml");
        let key = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
        std::fs::write(
            repo.join("keys/ops.secret"),
            key.to_key_file_text().as_bytes(),
        )
        .expect("key");
        fleet
    }

    /// The repository's work tree.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Runs `push ARGS` in `dir` (no DEPLOYD_KEY_FILE, GC roots and Nix's
    /// cache memory of the test's own, no substituter).
    pub fn push_in(&self, dir: &Path, args: &[&str]) -> Output {
        super::run(
            super::push()
                .current_dir(dir)
                .args(args)
                .env_remove("DEPLOYD_KEY_FILE")
                .env("XDG_STATE_HOME", self.dir.path().join("state"))
                .env("XDG_CACHE_HOME", self.dir.path().join("nix-cache"))
                .env("NIX_CONFIG", "substituters ="),
        )
    }

    /// Runs `push ARGS` at the repository's root.
    pub fn push(&self, args: &[&str]) -> Output {
        self.push_in(&self.repo(), args)
    }
}

/// A flake (no inputs) whose every host's system is a file naming it.
fn flake_nix(hosts: &[&str]) -> String {
    let system = format!("{}-linux", std::env::consts::ARCH);
    let configurations: String = hosts
        .iter()
        .map(|host| format!("      {host} = system \"{host}\";\n"))
        .collect();
    format!(
        r#"{{
  outputs = {{ self }}: let
    system = name: {{
      config.system.build.toplevel = derivation {{
        name = "toy-system-${{name}}";
        system = "{system}";
        builder = "/bin/sh";
        args = [ "-c" "echo ${{name}} > $out" ];
      }};
    }};
  in {{
    nixosConfigurations = {{
{configurations}    }};
  }};
}}
"#
    )
}

/// Standard output and standard error, as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
