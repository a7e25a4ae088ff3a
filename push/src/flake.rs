//! The flake a command works on: `--flake DIR`, or `--flake DIR#HOST` as
//! nixos-rebuild takes it (the part after the last `#` selects that host,
//! the part before is the directory), and where its push.toml is: in that
//! directory or the nearest of its parents, as cargo and git find theirs,
//! stopping at the git repository's root. The directory where push.toml is
//! found is the flake's root: relative paths in push.toml (`key_file`,
//! `sign_key_file`, `ca_file`, ...) are relative to it, and it is what is
//! built.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use deployd_protocol::HostName;

/// The inventory's file name, at the flake's root.
pub const INVENTORY_FILE: &str = "push.toml";

/// `--flake DIR[#HOST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakeArg {
    /// The directory (push.toml in it or one of its parents).
    pub dir: PathBuf,
    /// The host after `#`, if any.
    pub host: Option<HostName>,
}

impl FromStr for FlakeArg {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let Some((dir, host)) = written.rsplit_once('#') else {
            return Ok(FlakeArg {
                dir: PathBuf::from(written),
                host: None,
            });
        };
        if host.is_empty() {
            return Err(format!(
                "{written:?} names no host after '#': give DIR#HOST (such as .#sambirano), or DIR alone"
            ));
        }
        let host = host
            .parse()
            .map_err(|error| format!("{written:?}: after '#': {error}"))?;
        let dir = if dir.is_empty() { "." } else { dir };
        Ok(FlakeArg {
            dir: PathBuf::from(dir),
            host: Some(host),
        })
    }
}

impl fmt::Display for FlakeArg {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.dir.display())?;
        match &self.host {
            Some(host) => write!(formatter, "#{host}"),
            None => Ok(()),
        }
    }
}

/// The flake's root: `start` or the nearest of its parents holding
/// push.toml, searching no higher than the git repository's root (the
/// directory holding `.git`). The error names every directory searched.
pub fn inventory_root(start: &Path) -> Result<PathBuf> {
    let canonical = start.canonicalize().with_context(|| {
        format!(
            "cannot read the inventory: no flake directory {}",
            start.display()
        )
    })?;
    let mut searched = Vec::new();
    for dir in canonical.ancestors() {
        if dir.join(INVENTORY_FILE).exists() {
            return Ok(dir.to_owned());
        }
        searched.push(dir.display().to_string());
        if dir.join(".git").exists() {
            break;
        }
    }
    bail!(
        "cannot read the inventory: no {INVENTORY_FILE} in {} or its parents (searched {}; the search stops at the git repository's root)",
        start.display(),
        searched.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_after_the_hash() {
        let parsed = |written: &str| written.parse::<FlakeArg>();
        assert_eq!(
            parsed(".#sambirano").expect("host"),
            FlakeArg {
                dir: ".".into(),
                host: Some("sambirano".parse().expect("name"))
            }
        );
        let fleet = parsed("/srv/fleet#web-1.lan").expect("path#host");
        assert_eq!(fleet.dir, Path::new("/srv/fleet"));
        assert_eq!(fleet.to_string(), "/srv/fleet#web-1.lan");
        assert_eq!(parsed("#isalo").expect("host").dir, Path::new("."));
        assert_eq!(parsed("a#b#c").expect("last #").dir, Path::new("a#b"));
        assert_eq!(parsed("../fleet").expect("dir").host, None);
        let error = parsed(".#").expect_err("no host");
        assert!(error.contains("names no host after '#'"), "{error}");
        assert!(parsed("fleet#").is_err());
        assert!(parsed(".#not a host").is_err());
    }

    #[test]
    fn push_toml_is_found_in_a_parent_up_to_the_repository() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical");
        let deep = root.join("fleet/hosts/web");
        std::fs::create_dir_all(&deep).expect("dirs");
        std::fs::create_dir(root.join("fleet/.git")).expect(".git");
        std::fs::write(root.join("fleet/push.toml"), "").expect("push.toml");
        assert_eq!(inventory_root(&deep).expect("found"), root.join("fleet"));
        assert_eq!(
            inventory_root(&root.join("fleet")).expect("found"),
            root.join("fleet")
        );

        // Above the repository's root, nothing is searched.
        std::fs::rename(root.join("fleet/push.toml"), root.join("push.toml")).expect("move");
        let error = inventory_root(&deep).expect_err("not found").to_string();
        let expected = format!(
            "searched {}, {}, {};",
            deep.display(),
            root.join("fleet/hosts").display(),
            root.join("fleet").display()
        );
        assert!(error.contains(&expected), "{error}");
        assert!(error.starts_with("cannot read the inventory"), "{error}");
    }
}
