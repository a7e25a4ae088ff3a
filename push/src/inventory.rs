//! `push.toml`, the inventory at the flake's root: defaults and hosts.
//!
//! ```toml
//! [defaults]
//! key_file = "keys/ops-1.secret"  # or --key, or env DEPLOYD_KEY_FILE
//! port = 9797
//! build_host = "root@kelyus"      # build there over SSH (ssh-ng)
//! copy_to = "file:///srv/cache"   # where built closures must be copied
//! sign_key_file = "keys/cache.secret"  # sign them while copying
//!
//! [hosts.sambirano]
//! address = "sambirano.lan"       # default: the host's name
//! port = 9797                     # default: defaults.port
//! hardware_config = "hosts/sambirano/hardware-configuration.nix"  # the default
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::HostName;

/// The file's name, at the flake's root.
pub const INVENTORY_FILE: &str = "push.toml";

/// The inventory as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Settings for every host.
    #[serde(default)]
    pub defaults: Defaults,
    /// The hosts, by name (their `nixosConfigurations` attribute).
    #[serde(default)]
    pub hosts: BTreeMap<HostName, HostEntry>,
}

/// `[defaults]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The deploy key (secret), relative to the flake's root.
    pub key_file: Option<PathBuf>,
    /// deployd's port on the hosts.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Build on this machine over SSH instead of locally.
    pub build_host: Option<String>,
    /// Copy built closures to this store (the hosts' cache); never with a
    /// user or password in the URL (Nix's `netrc-file`, an AWS profile or
    /// an SSH key hold those).
    pub copy_to: Option<String>,
    /// Sign closures with this cache key while copying them.
    pub sign_key_file: Option<PathBuf>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            key_file: None,
            port: default_port(),
            build_host: None,
            copy_to: None,
            sign_key_file: None,
        }
    }
}

fn default_port() -> u16 {
    9797
}

/// `[hosts.NAME]`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Where its deployd answers; default: the host's name.
    pub address: Option<String>,
    /// deployd's port; default: `defaults.port`.
    pub port: Option<u16>,
    /// Where `push install --fetch-hardware-config` writes the host's
    /// `hardware-configuration.nix`, relative to the flake's root; default:
    /// `hosts/NAME/hardware-configuration.nix`.
    pub hardware_config: Option<PathBuf>,
}

/// A host to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: HostName,
    /// The base URL of its deployd.
    pub url: String,
}

impl Inventory {
    /// Reads `flake_dir/push.toml`.
    pub fn load(flake_dir: &Path) -> Result<Inventory> {
        let path = flake_dir.join(INVENTORY_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the inventory {}", path.display()))?;
        let inventory: Inventory = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "invalid inventory {}: {}",
                path.display(),
                one_line(&mask_credentials(&error.to_string()))
            )
        })?;
        if let Some(copy_to) = &inventory.defaults.copy_to {
            if let Some(credentials) = url_credentials(copy_to) {
                bail!(
                    "{}: [defaults] copy_to {:?} has a {} in it; credentials never go in a URL (push and push serve show it in their output and statuses): {}",
                    path.display(),
                    mask_credentials(copy_to),
                    if credentials.has_password { "password" } else { "user name" },
                    credentials.where_they_go()
                );
            }
        }
        Ok(inventory)
    }

    /// The hosts `--host` names, or all with `--all`.
    pub fn select(&self, names: &[HostName], all: bool) -> Result<Vec<Target>> {
        let names: Vec<HostName> = match (all, names.is_empty()) {
            (true, true) => self.hosts.keys().cloned().collect(),
            (false, false) => names.to_vec(),
            (true, false) => bail!("give --host or --all, not both"),
            (false, true) => bail!("name the hosts with --host NAME, or use --all"),
        };
        if names.is_empty() {
            bail!("the inventory has no hosts");
        }
        names.iter().map(|name| self.target(name)).collect()
    }

    /// The host called `name`.
    pub fn target(&self, name: &HostName) -> Result<Target> {
        let entry = self
            .hosts
            .get(name)
            .with_context(|| format!("unknown host {name}: it is not in {INVENTORY_FILE}"))?;
        let address = entry.address.clone().unwrap_or_else(|| name.to_string());
        let port = entry.port.unwrap_or(self.defaults.port);
        let host = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]")
        } else {
            address
        };
        Ok(Target {
            name: name.clone(),
            url: format!("http://{host}:{port}"),
        })
    }
}

/// A multi-line parser message on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Result<Inventory> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(INVENTORY_FILE), text).expect("write");
        Inventory::load(dir.path())
    }

    #[test]
    fn hosts_and_defaults() {
        let inventory = inventory(
            "[defaults]\nkey_file = \"keys/ops-1.secret\"\nport = 9000\n\
             [hosts.sambirano]\naddress = \"sambirano.lan\"\n\
             [hosts.isalo]\n\
             [hosts.pi]\naddress = \"fd00::7\"\nport = 9797\n",
        )
        .expect("valid");
        let all = inventory.select(&[], true).expect("all");
        let urls: Vec<&str> = all.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://isalo:9000",
                "http://[fd00::7]:9797",
                "http://sambirano.lan:9000"
            ]
        );
        let one = inventory
            .select(&["isalo".parse().expect("name")], false)
            .expect("one");
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn credentials_in_copy_to_are_refused() {
        let error = inventory("[defaults]\ncopy_to = \"https://alice:s3cret@cache.example\"\n")
            .expect_err("a password")
            .to_string();
        assert!(
            error.ends_with("[defaults] copy_to \"https://alice:***@cache.example\" has a password in it; credentials never go in a URL (push and push serve show it in their output and statuses): give the URL without them and put them in Nix's netrc-file: a line \"machine cache.example login alice password PASSWORD\" in a file kept secret, named by netrc-file in nix.conf (on NixOS: nix.settings.netrc-file = \"/run/agenix/nix-netrc\")"),
            "{error}"
        );
        let error = inventory("[defaults]\ncopy_to = \"s3://AKIAEXAMPLE:s3cret@fleet\"\n")
            .expect_err("S3 keys")
            .to_string();
        assert!(error.contains("?profile=NAME"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        for fine in [
            "ssh-ng://nix-ssh@kelyus",
            "s3://fleet?profile=ci&region=eu-west-1",
            "file:///srv/cache",
        ] {
            inventory(&format!("[defaults]\ncopy_to = \"{fine}\"\n")).expect(fine);
        }
    }

    #[test]
    fn bad_inventories_and_selections() {
        let error = inventory("[hosts.a]\nadress = \"x\"\n").expect_err("typo");
        assert!(
            error.to_string().contains("unknown field `adress`"),
            "{error}"
        );
        assert!(!error.to_string().contains('\n'));
        assert!(inventory("[hosts.\"not a host\"]\n").is_err());
        let valid = inventory("[hosts.a]\n").expect("valid");
        let error = valid
            .select(&["b".parse().expect("name")], false)
            .expect_err("unknown");
        assert!(error.to_string().contains("unknown host b"), "{error}");
        assert!(valid.select(&[], false).is_err());
    }
}
