//! `push.toml`, the inventory at the flake's root (found in the flake
//! directory or its parents: [`crate::flake`]): defaults and hosts.
//!
//! ```toml
//! [defaults]
//! key_file = "keys/ops-1.secret"  # or --key, or env DEPLOYD_KEY_FILE
//! port = 9797
//! build_host = "root@kelyus"      # build there over SSH (ssh-ng)
//! copy_to = "file:///srv/cache"   # where built closures must be copied
//! sign_key_file = "keys/cache.secret"  # sign them while copying
//! tls = true                      # reach every host over HTTPS (default: false)
//! ca_file = "keys/fleet-ca.pem"   # trusted besides the system's roots
//!
//! [hosts.sambirano]
//! address = "sambirano.lan"       # default: the host's name; or https://HOST[:PORT]
//! port = 9797                     # default: defaults.port
//! tls = true                      # default: defaults.tls (an https:// address implies it)
//! ca_file = "keys/sambirano.pem"  # trusted for it as well as defaults.ca_file
//! hardware_config = "hosts/sambirano/hardware-configuration.nix"  # the default
//! tags = ["prod", "web"]          # selected with --on @prod (plain words)
//! ```
//!
//! A host reached over HTTPS is reached over HTTPS only: every request to
//! it, and no fallback to HTTP ([`Target::https`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::HostName;

use crate::selection::{Selection, Tag};
use crate::tls::{CaFile, Trust};

pub use crate::flake::INVENTORY_FILE;

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
    /// The CA files it names, read once, by the path written.
    #[serde(skip)]
    ca_files: BTreeMap<PathBuf, Arc<CaFile>>,
    /// The directory it was read from: the flake's root.
    #[serde(skip)]
    root: PathBuf,
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
    /// Reach every host over HTTPS (a host's own `tls` overrides it).
    #[serde(default)]
    pub tls: bool,
    /// CA certificates (PEM) trusted besides the system's roots, for every
    /// host and the caches push checks; relative to the flake's root.
    pub ca_file: Option<PathBuf>,
    /// How long each signed deploy is valid, in seconds: 1 to 900 (the wire
    /// format's window), default 300. Each batch of a rollout is signed
    /// when it starts, so a short lifetime holds however long a rollout
    /// takes; a host that stays `busy` (push serve waits for it) is given
    /// up once its message's lifetime ran out.
    pub message_lifetime_s: Option<u64>,
    /// The channel the pull hosts read (`pull = true`): `push publish`'s
    /// default `--channel`, and where `push status` reads their reports
    /// when it is push serve's (`https://SERVE/v1/channel`).
    pub channel: Option<String>,
}

impl Defaults {
    /// [`Defaults::message_lifetime_s`], checked.
    pub fn message_lifetime_s(&self) -> Result<u64> {
        match self.message_lifetime_s {
            None => Ok(deployd_protocol::DEFAULT_LIFETIME_S),
            Some(seconds @ 1..=deployd_protocol::MAX_WINDOW_S) => Ok(seconds),
            Some(seconds) => bail!(
                "[defaults] message_lifetime_s = {seconds}: it must be 1 to {} seconds",
                deployd_protocol::MAX_WINDOW_S
            ),
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            key_file: None,
            port: default_port(),
            build_host: None,
            copy_to: None,
            sign_key_file: None,
            tls: false,
            ca_file: None,
            message_lifetime_s: None,
            channel: None,
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
    /// Where its deployd answers: a host name or address, or an
    /// `https://HOST[:PORT]` URL (HTTPS then); default: the host's name.
    pub address: Option<String>,
    /// deployd's port; default: `defaults.port`.
    pub port: Option<u16>,
    /// Reach it over HTTPS only; default: `defaults.tls`.
    pub tls: Option<bool>,
    /// CA certificates (PEM) trusted for it, besides the system's roots and
    /// `defaults.ca_file`; relative to the flake's root.
    pub ca_file: Option<PathBuf>,
    /// Where `push install --fetch-hardware-config` writes the host's
    /// `hardware-configuration.nix`, relative to the flake's root; default:
    /// `hosts/NAME/hardware-configuration.nix`.
    pub hardware_config: Option<PathBuf>,
    /// Its tags, for `--on @TAG`: plain words (`["prod", "web"]`).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// It pulls its desired state from a channel (`push publish`) rather
    /// than being called: push and push serve do not open a connection to it.
    #[serde(default)]
    pub pull: bool,
    /// Its host key (`NAME:BASE64`, from its `/v1/status` or its
    /// `state_dir`): the one key its reports to push serve are signed with.
    pub host_key: Option<deployd_protocol::PublicKey>,
}

/// A host to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: HostName,
    /// The base URL of its deployd (`https://` for a host reached over TLS).
    pub url: String,
    /// The CAs trusted for it and for its caches.
    pub trust: Trust,
}

impl Target {
    /// Whether it is reached over HTTPS, and only so.
    pub fn https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The same host, also trusting `ca_file` (push serve's own).
    pub fn also_trusting(mut self, ca_file: Option<&Arc<CaFile>>) -> Target {
        self.trust = self.trust.and(ca_file);
        self
    }
}

impl Inventory {
    /// Reads push.toml, found in `flake_dir` or its parents
    /// ([`crate::flake::inventory_root`]), and the CA files it names.
    pub fn load(flake_dir: &Path) -> Result<Inventory> {
        let root = crate::flake::inventory_root(flake_dir)?;
        let mut inventory = Inventory::parse(&root)?;
        inventory.read_ca_files(&root)?;
        inventory.root = root;
        Ok(inventory)
    }

    /// The flake's root: the directory push.toml was read from. Relative
    /// paths in push.toml are relative to it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads push.toml from a repository push serve fetched: like
    /// [`Inventory::load`], but a CA file must be a file of the repository
    /// (a relative path that stays inside it), never one of the machine's.
    pub fn load_from_repository(work_tree: &Path) -> Result<Inventory> {
        let mut inventory = Inventory::parse(work_tree)?;
        for path in inventory.ca_file_paths() {
            let inside = path
                .components()
                .all(|part| matches!(part, Component::Normal(_) | Component::CurDir));
            if !inside {
                bail!(
                    "{INVENTORY_FILE}: ca_file {} must be a path inside the repository",
                    path.display()
                );
            }
        }
        inventory.read_ca_files(work_tree)?;
        inventory.root = work_tree.to_owned();
        Ok(inventory)
    }

    fn parse(flake_dir: &Path) -> Result<Inventory> {
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

    /// Every `ca_file` written, defaults first.
    fn ca_file_paths(&self) -> Vec<PathBuf> {
        let hosts = self.hosts.values().filter_map(|host| host.ca_file.clone());
        self.defaults
            .ca_file
            .clone()
            .into_iter()
            .chain(hosts)
            .collect()
    }

    /// Reads each CA file once (relative to `root`): a bad one is a bad
    /// inventory, told before anything is sent.
    fn read_ca_files(&mut self, root: &Path) -> Result<()> {
        for written in self.ca_file_paths() {
            if self.ca_files.contains_key(&written) {
                continue;
            }
            let file = CaFile::load(&root.join(&written))
                .with_context(|| format!("{INVENTORY_FILE}: ca_file"))?;
            self.ca_files.insert(written, Arc::new(file));
        }
        Ok(())
    }

    /// The hosts `selection` names, each once, in push.toml's order.
    pub fn select(&self, selection: &Selection) -> Result<Vec<Target>> {
        let hosts = self
            .hosts
            .iter()
            .map(|(name, entry)| (name, entry.tags.as_slice()));
        let names = selection.resolve(hosts)?;
        names.iter().map(|name| self.target(name)).collect()
    }

    /// Every host of push.toml.
    pub fn all(&self) -> Result<Vec<Target>> {
        self.select(&Selection {
            all: true,
            ..Selection::default()
        })
    }

    /// The host called `name`.
    pub fn target(&self, name: &HostName) -> Result<Target> {
        let entry = self
            .hosts
            .get(name)
            .with_context(|| format!("unknown host {name}: it is not in {INVENTORY_FILE}"))?;
        let written = entry.address.clone().unwrap_or_else(|| name.to_string());
        let (address, url_port, https_address) = parse_address(&written)
            .with_context(|| format!("[hosts.{name}] address {written:?}"))?;
        let https = match (entry.tls, https_address) {
            (Some(false), true) => bail!(
                "[hosts.{name}] says tls = false but its address {written:?} is an https:// URL"
            ),
            (Some(tls), false) => tls,
            (None, false) => self.defaults.tls,
            (_, true) => true,
        };
        let port = url_port.or(entry.port).unwrap_or(self.defaults.port);
        let host = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]")
        } else {
            address
        };
        let scheme = if https { "https" } else { "http" };
        let trust = Trust::with(self.ca_file(self.defaults.ca_file.as_ref())?)
            .and(self.ca_file(entry.ca_file.as_ref())?);
        Ok(Target {
            name: name.clone(),
            url: format!("{scheme}://{host}:{port}"),
            trust,
        })
    }

    /// What every server of the fleet is trusted with: the system's roots
    /// and `[defaults] ca_file` (a channel, say).
    pub fn defaults_trust(&self) -> Result<Trust> {
        Ok(Trust::with(self.ca_file(self.defaults.ca_file.as_ref())?))
    }

    /// The CA file read for `written`.
    fn ca_file(&self, written: Option<&PathBuf>) -> Result<Option<&Arc<CaFile>>> {
        let Some(written) = written else {
            return Ok(None);
        };
        match self.ca_files.get(written) {
            Some(file) => Ok(Some(file)),
            None => bail!(
                "{INVENTORY_FILE}: ca_file {} was not read",
                written.display()
            ),
        }
    }
}

/// A host's `address`: a host name or IP address, or an
/// `https://HOST[:PORT]` URL with nothing after the authority. Returns the
/// host, the URL's port and whether it was an `https://` URL.
fn parse_address(written: &str) -> Result<(String, Option<u16>, bool)> {
    let Some((scheme, _)) = written.split_once("://") else {
        if written.is_empty() || written.contains(['/', '?', '#', '@', ' ']) {
            bail!("is not a host name, an IP address or an https:// URL");
        }
        return Ok((written.to_owned(), None, false));
    };
    if scheme != "https" {
        bail!("is a {scheme}:// URL: give a host name (plain HTTP) or an https:// URL");
    }
    let url = reqwest::Url::parse(written).context("is not a URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("must not hold credentials");
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        bail!("must be https://HOST or https://HOST:PORT, nothing after");
    }
    let Some(host) = url.host_str() else {
        bail!("names no host");
    };
    // An IPv6 address comes bracketed; the caller brackets it again.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // `Url::port` hides a written :443 (the scheme's default): look.
    let authority = written["https://".len()..].split('/').next().unwrap_or("");
    let port_written = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()));
    let port = port_written.then(|| url.port_or_known_default()).flatten();
    Ok((host.to_owned(), port, true))
}

/// A multi-line parser message on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Selection {
        Selection {
            hosts: names
                .iter()
                .map(|name| name.parse().expect("name"))
                .collect(),
            ..Selection::default()
        }
    }

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
        let all = inventory.all().expect("all");
        let urls: Vec<&str> = all.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://isalo:9000",
                "http://[fd00::7]:9797",
                "http://sambirano.lan:9000"
            ]
        );
        let one = inventory.select(&hosts(&["isalo"])).expect("one");
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
        let error = inventory("[hosts.a]\ntags = [\"pr od\"]\n").expect_err("a tag with a space");
        assert!(
            error.to_string().contains("a tag is a plain word"),
            "{error}"
        );
        let valid = inventory("[hosts.a]\n").expect("valid");
        let error = valid.select(&hosts(&["b"])).expect_err("unknown");
        assert!(error.to_string().contains("unknown host b"), "{error}");
        assert!(valid.select(&Selection::default()).is_err());
    }

    #[test]
    fn hosts_reached_over_https() {
        let fleet = inventory(
            "[defaults]\ntls = true\n\
             [hosts.a]\n\
             [hosts.b]\ntls = false\n\
             [hosts.c]\naddress = \"https://c.lan\"\n\
             [hosts.d]\naddress = \"https://d.lan:443/\"\nport = 1\n\
             [hosts.e]\naddress = \"https://[fd00::7]:9443\"\n",
        )
        .expect("valid");
        let urls: Vec<(String, bool)> = fleet
            .all()
            .expect("all")
            .into_iter()
            .map(|target| (target.url.clone(), target.https()))
            .collect();
        assert_eq!(
            urls,
            [
                ("https://a:9797".to_owned(), true),
                ("http://b:9797".to_owned(), false),
                ("https://c.lan:9797".to_owned(), true),
                ("https://d.lan:443".to_owned(), true),
                ("https://[fd00::7]:9443".to_owned(), true),
            ]
        );
        for (address, why) in [
            ("http://a.lan", "http:// URL"),
            ("https://a.lan/v1", "nothing after"),
            ("https://u:p@a.lan", "credentials"),
            ("a.lan/x", "not a host name"),
        ] {
            let text = format!("[hosts.a]\naddress = \"{address}\"\n");
            let error = inventory(&text)
                .and_then(|inventory| inventory.all())
                .expect_err(address);
            assert!(format!("{error:#}").contains(why), "{address}: {error:#}");
        }
        let contradiction = inventory("[hosts.a]\naddress = \"https://a\"\ntls = false\n")
            .and_then(|inventory| inventory.all())
            .expect_err("tls = false with https://");
        assert!(
            contradiction.to_string().contains("tls = false"),
            "{contradiction}"
        );
    }

    const CA: &str = include_str!("../tests/fixtures/tls/ca.pem");

    #[test]
    fn ca_files_are_read_once_and_added_to_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("keys")).expect("dir");
        std::fs::write(dir.path().join("keys/fleet.pem"), CA).expect("ca");
        std::fs::write(dir.path().join("keys/a.pem"), CA).expect("ca");
        std::fs::write(
            dir.path().join(INVENTORY_FILE),
            "[defaults]\nca_file = \"keys/fleet.pem\"\n\
             [hosts.a]\nca_file = \"keys/a.pem\"\n[hosts.b]\n",
        )
        .expect("inventory");
        let inventory = Inventory::load(dir.path()).expect("valid");
        let a = inventory.target(&"a".parse().expect("name")).expect("a");
        let b = inventory.target(&"b".parse().expect("name")).expect("b");
        assert_ne!(a.trust, b.trust, "a trusts its own CA as well");
        let fleet = inventory.ca_files.get(Path::new("keys/fleet.pem")).cloned();
        assert_eq!(b.trust, Trust::with(fleet.as_ref()));
        assert_eq!(b.clone().also_trusting(fleet.as_ref()), b);

        std::fs::remove_file(dir.path().join("keys/a.pem")).expect("remove");
        let error = Inventory::load(dir.path()).expect_err("missing CA file");
        assert!(format!("{error:#}").contains("keys/a.pem"), "{error:#}");
    }

    #[test]
    fn a_repository_names_only_its_own_ca_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), CA).expect("ca");
        for (ca_file, allowed) in [
            ("ca.pem", true),
            ("./ca.pem", true),
            ("/etc/ssl/certs/ca-certificates.crt", false),
            ("../ca.pem", false),
        ] {
            std::fs::write(
                dir.path().join(INVENTORY_FILE),
                format!("[hosts.a]\nca_file = \"{ca_file}\"\n"),
            )
            .expect("inventory");
            let loaded = Inventory::load_from_repository(dir.path());
            assert_eq!(loaded.is_ok(), allowed, "{ca_file}: {:?}", loaded.err());
        }
    }
}
