//! The daemon's config file (TOML). The book's config reference
//! (docs/src/reference/config.md) fixes `listen`, `hostname`, `state_dir`,
//! `[[trusted_keys]]`, `[nix]` and `[tls]`; the other keys are deployd's own,
//! each with a default, documented there. Unknown keys are errors, secrets
//! are never inline (keys are public; files are paths), and
//! [`Config::load`] checks everything a running daemon would trip on later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::ssh::SshKeyError;
use deployd_protocol::{
    DuplicateKeyName, HostName, KeyError, PublicKey, TrustedKeys, DEFAULT_MAX_DESIRED_AGE_S,
    LONGEST_DESIRED_AGE_S,
};
use deployd_service::tls::{CertificateFiles, TlsFilesError};

use crate::channel_url::ChannelUrl;
use crate::http_url::HttpUrl;

mod trusted_keys;

pub use trusted_keys::TrustedKeyEntry;

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid config {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A trusted key cannot be used.
    #[error("trusted key {index}")]
    TrustedKey {
        /// Its position in `[[trusted_keys]]`, from 1.
        index: usize,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A trusted SSH key or SSH CA cannot be used.
    #[error("trusted key {index} ({field})")]
    TrustedSshKey {
        /// Its position in `[[trusted_keys]]`, from 1.
        index: usize,
        /// The setting that holds it: `ssh`, `ssh_file` or `ssh_ca`.
        field: &'static str,
        /// Why.
        #[source]
        source: SshKeyError,
    },
    /// A trusted key's `ssh_file` cannot be read.
    #[error("trusted key {index}: cannot read ssh_file {path}")]
    SshKeyFile {
        /// Its position in `[[trusted_keys]]`, from 1.
        index: usize,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `[tls]` certificate and key, or a `ca_file`, cannot be used.
    #[error("{section}")]
    Tls {
        /// `[tls]`, `[health]` or `[pull]`.
        section: &'static str,
        /// Why.
        #[source]
        source: TlsFilesError,
    },
    /// Two entries trust the same key, so a `keyid` would be ambiguous.
    #[error("[[trusted_keys]]")]
    DuplicateKey(#[source] DuplicateKeyName),
    /// A value is out of its bounds or inconsistent with another.
    #[error("{0}")]
    Invalid(String),
    /// No host name given, and the machine's cannot be read.
    #[error("no hostname in the config and the machine's host name is unusable")]
    Hostname(#[source] deployd_protocol::NameError),
}

/// The longest timeout a config may set: a week.
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
/// The longest quarantine a config may set: a year.
pub const MAX_QUARANTINE_S: u64 = 365 * 24 * 3600;

/// The config file as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address and port of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// This host's name, as deploy requests must name it; default: the machine's.
    pub hostname: Option<HostName>,
    /// Where deploy records, logs and seen nonces live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Whether read endpoints require a signed `read` message.
    #[serde(default)]
    pub read_requires_signature: bool,
    /// How many finished deploys are kept.
    #[serde(default = "default_history_limit")]
    pub history_limit: usize,
    /// For how many seconds a store path whose deploy ended `failed` or
    /// `rolled_back` is refused (`quarantined`) unless a request says
    /// `retry_failed`; 0 turns quarantine off.
    #[serde(default = "default_quarantine_s")]
    pub quarantine_s: u64,
    /// For how many seconds a system fetched by a `prepare` deploy is kept
    /// (its GC root) unless a deploy of another system releases it first.
    #[serde(default = "default_prepare_keep_s")]
    pub prepare_keep_s: u64,
    /// Who may sign what.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKeyEntry>,
    /// Where closures come from, and the Nix programs.
    pub nix: NixSection,
    /// How systems are activated.
    #[serde(default)]
    pub activation: ActivationSection,
    /// What must hold after an activation, or it is rolled back.
    #[serde(default)]
    pub health: HealthSection,
    /// When present, the API is served over HTTPS only, with this
    /// certificate and key.
    pub tls: Option<TlsSection>,
    /// Channels this host pulls its desired state from.
    #[serde(default)]
    pub pull: PullSection,
}

/// `[pull]`: the channels a host that cannot be reached reads its desired
/// state from (docs/src/design/channels.md). No channel: the host only
/// takes deploys pushed to its API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSection {
    /// `http://`, `https://` or `file://` channels; the host reads
    /// `CHANNEL/hosts/<hostname>.json` from each. Never with a user or
    /// password in the URL.
    #[serde(default)]
    pub channels: Vec<ChannelUrl>,
    /// Seconds between two polls of a channel, each wait drawn between 0.8
    /// and 1.2 times it (1 to 86400). A push serve channel is long-polled
    /// instead.
    #[serde(default = "default_pull_interval_s")]
    pub interval_s: u64,
    /// The longest validity window a desired state may have (from its
    /// `issued_at` to its `expires_at`), in seconds: at most 366 days.
    #[serde(default = "default_max_desired_age_s")]
    pub max_desired_age_s: u64,
    /// PEM certificates of CAs trusted for `https://` channels, besides
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for PullSection {
    fn default() -> Self {
        PullSection {
            channels: Vec::new(),
            interval_s: default_pull_interval_s(),
            max_desired_age_s: default_max_desired_age_s(),
            ca_file: None,
        }
    }
}

/// The longest pause between two polls of a channel: a day.
pub const MAX_PULL_INTERVAL_S: u64 = 24 * 3600;

/// `60`: a minute.
fn default_pull_interval_s() -> u64 {
    60
}
/// `2592000`: 30 days.
fn default_max_desired_age_s() -> u64 {
    DEFAULT_MAX_DESIRED_AGE_S
}

/// `[tls]`: the API's certificate chain and private key (PEM). The files
/// are looked at on every TLS handshake and read again when they changed
/// (an ACME renewal), and on SIGHUP; a pair that does not load is logged
/// and the one in use kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain: the host's certificate first, then its
    /// intermediates (an ACME `fullchain.pem`).
    pub cert_file: PathBuf,
    /// Its private key: PKCS#8, RSA (PKCS#1) or EC (SEC1), unencrypted.
    pub key_file: PathBuf,
}

impl TlsSection {
    /// The two files.
    pub fn files(&self) -> CertificateFiles {
        CertificateFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

/// `[health]`: checks run after every `switch` or `test` (after the
/// confirmation, when one was asked for); retried until all pass or the
/// deadline passes, then the deploy is rolled back.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Commands that must exit 0 (`[[health.commands]]`).
    #[serde(default)]
    pub commands: Vec<HealthCommand>,
    /// `http://` or `https://` URLs that must answer a GET with a 2xx status.
    #[serde(default)]
    pub http: Vec<HttpUrl>,
    /// PEM certificates of CAs trusted for `https://` URLs, besides the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Where systemd runs: `systemctl is-system-running --wait` must not
    /// leave failed units other than `allowed_failed_units` and those that
    /// had already failed before the deploy's switch.
    #[serde(default = "default_true")]
    pub systemd: bool,
    /// Units whose failure does not fail the check.
    #[serde(default)]
    pub allowed_failed_units: Vec<String>,
    /// How long the checks may keep failing before the deploy rolls back.
    #[serde(default = "default_health_deadline_s")]
    pub deadline_s: u64,
    /// The pause between two rounds of checks.
    #[serde(default = "default_health_interval_s")]
    pub interval_s: u64,
}

/// One `[[health.commands]]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCommand {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// How long one run may take.
    #[serde(default = "default_health_command_timeout_s")]
    pub timeout_s: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            commands: Vec::new(),
            http: Vec::new(),
            ca_file: None,
            systemd: true,
            allowed_failed_units: Vec::new(),
            deadline_s: default_health_deadline_s(),
            interval_s: default_health_interval_s(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_health_deadline_s() -> u64 {
    60
}
fn default_health_interval_s() -> u64 {
    2
}
fn default_health_command_timeout_s() -> u64 {
    30
}

/// `[nix]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NixSection {
    /// The binary caches closures are fetched from, and no others; never
    /// with a user or password in the URL (Nix's `netrc-file` holds those).
    pub substituters: Vec<String>,
    /// The keys those caches sign with; Nix refuses paths signed otherwise.
    pub trusted_public_keys: Vec<String>,
    /// `nix-store` program.
    #[serde(default = "default_nix_store")]
    pub nix_store: PathBuf,
    /// `nix-env` program.
    #[serde(default = "default_nix_env")]
    pub nix_env: PathBuf,
    /// Longest fetch, in seconds.
    #[serde(default = "default_fetch_timeout_s")]
    pub fetch_timeout_s: u64,
    /// The fast fetch: deployd walks the closure from the `http(s)://`
    /// caches with many requests in flight and downloads the NARs in
    /// parallel into a local stage, which Nix substitutes from first (Nix
    /// still checks every signature and hash); 16 paths to fetch or fewer
    /// are left to Nix, without a stage. `false`: Nix fetches alone.
    #[serde(default = "default_true")]
    pub fast_fetch: bool,
}

/// `[activation]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationSection {
    /// The system profile.
    #[serde(default = "default_system_profile")]
    pub system_profile: PathBuf,
    /// The link to the running system.
    #[serde(default = "default_current_system")]
    pub current_system: PathBuf,
    /// The link to the system the machine booted.
    #[serde(default = "default_booted_system")]
    pub booted_system: PathBuf,
    /// Longest `switch-to-configuration` run, in seconds.
    #[serde(default = "default_switch_timeout_s")]
    pub switch_timeout_s: u64,
    /// `systemd-run` program, used when systemd runs the machine.
    #[serde(default = "default_systemd_run")]
    pub systemd_run: PathBuf,
    /// `systemctl` program, used when systemd runs the machine.
    #[serde(default = "default_systemctl")]
    pub systemctl: PathBuf,
    /// deployd's own unit. After a deploy whose system runs another deployd
    /// in it, the daemon exits once the deploy is recorded, and its service
    /// manager starts the new one (the NixOS module sets
    /// `restartIfChanged = false`, so a switch never stops deployd midway).
    #[serde(default = "default_unit")]
    pub unit: String,
    /// The lock every switch-to-configuration takes (current NixOS):
    /// deployd waits while another switch holds it. The lists a switch
    /// leaves for the next one are in its directory.
    #[serde(default = "default_switch_lock")]
    pub switch_lock: PathBuf,
}

impl Default for ActivationSection {
    fn default() -> Self {
        ActivationSection {
            system_profile: default_system_profile(),
            current_system: default_current_system(),
            booted_system: default_booted_system(),
            switch_timeout_s: default_switch_timeout_s(),
            systemd_run: default_systemd_run(),
            systemctl: default_systemctl(),
            unit: default_unit(),
            switch_lock: default_switch_lock(),
        }
    }
}

/// `"[::]:9797"`: port 9797 on every address, IPv6 and IPv4.
fn default_listen() -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 9797))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/deployd")
}
/// `86400`: a day.
fn default_quarantine_s() -> u64 {
    24 * 3600
}
/// `86400`: a day.
fn default_prepare_keep_s() -> u64 {
    24 * 3600
}
fn default_history_limit() -> usize {
    100
}
fn default_nix_store() -> PathBuf {
    PathBuf::from("nix-store")
}
fn default_nix_env() -> PathBuf {
    PathBuf::from("nix-env")
}
fn default_fetch_timeout_s() -> u64 {
    3600
}
fn default_system_profile() -> PathBuf {
    PathBuf::from("/nix/var/nix/profiles/system")
}
fn default_current_system() -> PathBuf {
    PathBuf::from("/run/current-system")
}
fn default_booted_system() -> PathBuf {
    PathBuf::from("/run/booted-system")
}
fn default_switch_timeout_s() -> u64 {
    900
}
fn default_systemd_run() -> PathBuf {
    PathBuf::from("systemd-run")
}
fn default_systemctl() -> PathBuf {
    PathBuf::from("systemctl")
}
fn default_switch_lock() -> PathBuf {
    PathBuf::from("/run/nixos/switch-to-configuration.lock")
}
fn default_unit() -> String {
    "deployd.service".to_owned()
}

/// A checked config, ready to run on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as written.
    pub file: ConfigFile,
    /// This host's name (from the file or the machine).
    pub hostname: HostName,
    /// The trusted deploy keys.
    pub trusted_keys: TrustedKeys,
    /// The file it was read from.
    pub path: PathBuf,
}

/// Whether key files (`key_file`, `ssh_file`) are read (to run) or only
/// checked to be absolute paths (at build time, where runtime secrets and
/// credentials do not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFiles {
    /// Read and parse every key file.
    Read,
    /// Only check that each is an absolute path.
    PathsOnly,
}

impl Config {
    /// Reads, parses and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, KeyFiles::Read)
    }

    /// Reads, parses and checks `path`, reading key files or not.
    pub fn load_with(path: &Path, key_files: KeyFiles) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path, key_files)
    }

    /// Parses and checks config text; `path` is where it comes from.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse(text, path, KeyFiles::Read)
    }

    fn parse(text: &str, path: &Path, key_files: KeyFiles) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        file.validate()?;
        let hostname = match &file.hostname {
            Some(name) => name.clone(),
            None => machine_hostname()?,
        };
        let trusted_keys = trusted_keys::load(&file.trusted_keys, key_files)?;
        if key_files == KeyFiles::Read {
            file.check_tls_files()?;
        }
        Ok(Config {
            file,
            hostname,
            trusted_keys,
            path: path.to_owned(),
        })
    }

    /// The fetch timeout.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.file.nix.fetch_timeout_s)
    }

    /// The switch timeout.
    pub fn switch_timeout(&self) -> Duration {
        Duration::from_secs(self.file.activation.switch_timeout_s)
    }
}

impl ConfigFile {
    /// Reads the `[tls]` pair and `[health] ca_file`: the certificate
    /// parses, the key parses and is the certificate's, the CA file holds
    /// certificates.
    fn check_tls_files(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            deployd_service::tls::load_pair(&tls.files()).map_err(|source| ConfigError::Tls {
                section: "[tls]",
                source,
            })?;
        }
        if let Some(ca_file) = &self.health.ca_file {
            deployd_service::tls::read_certificates(ca_file, "ca_file").map_err(|source| {
                ConfigError::Tls {
                    section: "[health]",
                    source,
                }
            })?;
        }
        if let Some(ca_file) = &self.pull.ca_file {
            deployd_service::tls::read_certificates(ca_file, "ca_file").map_err(|source| {
                ConfigError::Tls {
                    section: "[pull]",
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Checks what parsing alone cannot.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        let files = self
            .tls
            .iter()
            .flat_map(|tls| {
                [
                    ("[tls] cert_file", &tls.cert_file),
                    ("[tls] key_file", &tls.key_file),
                ]
            })
            .chain(
                self.health
                    .ca_file
                    .iter()
                    .map(|file| ("[health] ca_file", file)),
            )
            .chain(
                self.pull
                    .ca_file
                    .iter()
                    .map(|file| ("[pull] ca_file", file)),
            );
        for (name, path) in files {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be an absolute path, not {path:?}"
                )));
            }
        }
        if self.trusted_keys.is_empty() {
            return invalid("no [[trusted_keys]]: nothing could ever be deployed");
        }
        if self.nix.substituters.is_empty() {
            return invalid("[nix] substituters is empty: closures could not be fetched");
        }
        if self.nix.trusted_public_keys.is_empty() {
            return invalid(
                "[nix] trusted_public_keys is empty: Nix would accept no cache signature",
            );
        }
        for key in &self.nix.trusted_public_keys {
            key.parse::<PublicKey>().map_err(|error| {
                ConfigError::Invalid(format!("[nix] trusted_public_keys: {key:?}: {error}"))
            })?;
        }
        for url in &self.nix.substituters {
            if let Some(credentials) = url_credentials(url) {
                return Err(ConfigError::Invalid(format!(
                    "[nix] substituters: {:?} has a {} in it; credentials never go in a URL (logs, errors and statuses show it, and this file may be readable by all): {}",
                    mask_credentials(url),
                    if credentials.has_password { "password" } else { "user name" },
                    credentials.where_they_go()
                )));
            }
            if url.contains(char::is_whitespace) || !url.contains("://") {
                return Err(ConfigError::Invalid(format!(
                    "[nix] substituters: {url:?} is not a store URL"
                )));
            }
        }
        for check in &self.health.commands {
            if check.command.is_empty() || check.timeout_s == 0 || check.timeout_s > MAX_TIMEOUT_S {
                return invalid(
                    "[[health.commands]] need a command and a timeout_s of 1 s to a week",
                );
            }
        }
        if self.health.deadline_s > MAX_TIMEOUT_S || self.health.interval_s == 0 {
            return invalid("[health] deadline_s must be at most a week and interval_s at least 1");
        }
        if !self.state_dir.is_absolute() {
            return invalid("state_dir must be an absolute path");
        }
        if self.history_limit == 0 {
            return invalid("history_limit must be at least 1");
        }
        if self.quarantine_s > MAX_QUARANTINE_S {
            return Err(ConfigError::Invalid(format!(
                "quarantine_s must be 0 (off) to {MAX_QUARANTINE_S} seconds"
            )));
        }
        if !(1..=MAX_QUARANTINE_S).contains(&self.prepare_keep_s) {
            return Err(ConfigError::Invalid(format!(
                "prepare_keep_s must be 1 to {MAX_QUARANTINE_S} seconds"
            )));
        }
        self.pull.validate()?;
        for (name, seconds) in [
            ("[nix] fetch_timeout_s", self.nix.fetch_timeout_s),
            (
                "[activation] switch_timeout_s",
                self.activation.switch_timeout_s,
            ),
        ] {
            if seconds == 0 || seconds > MAX_TIMEOUT_S {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be 1 to {MAX_TIMEOUT_S} seconds"
                )));
            }
        }
        Ok(())
    }
}

impl PullSection {
    /// Bounds and duplicates; each URL was checked when it was parsed.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_s == 0 || self.interval_s > MAX_PULL_INTERVAL_S {
            return Err(ConfigError::Invalid(format!(
                "[pull] interval_s must be 1 to {MAX_PULL_INTERVAL_S} seconds"
            )));
        }
        if self.max_desired_age_s == 0 || self.max_desired_age_s > LONGEST_DESIRED_AGE_S {
            return Err(ConfigError::Invalid(format!(
                "[pull] max_desired_age_s must be 1 to {LONGEST_DESIRED_AGE_S} seconds (366 days)"
            )));
        }
        for (index, channel) in self.channels.iter().enumerate() {
            if self.channels[..index].contains(channel) {
                return Err(ConfigError::Invalid(format!(
                    "[pull] channels: {channel} is listed twice"
                )));
            }
        }
        Ok(())
    }
}

fn machine_hostname() -> Result<HostName, ConfigError> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    text.trim().parse().map_err(ConfigError::Hostname)
}

#[cfg(test)]
mod tests;
