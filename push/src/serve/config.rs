//! `push serve`'s config (TOML, `deny_unknown_fields`): where it listens and
//! keeps its state, the repository it fetches, its deploy key, the forge it
//! answers and reports to, how it builds (`[build]`), which branches
//! deploy which hosts, and a CA file for its HTTPS. Secrets only as file
//! paths, read once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deployd_command::redact::{mask_credentials, url_credentials};

use super::build_settings::BuildSection;
pub use super::following::Follow;
use crate::build::BuildMachine;
use crate::build_user::BuildUser;
use crate::tls::CaFile;

/// The whole file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the hooks, status and metrics are served.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where people reach its pages (`https://deploy.example.org`, or with
    /// a path when a proxy serves them under one): every commit status
    /// links to its rollout's page there. Without it, statuses carry no
    /// link (the pages are still served).
    pub public_url: Option<String>,
    /// Its clone of the repository, its queue and its history.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The fleet's repository, fetched with git2: `file://`, `http(s)://`
    /// or `ssh://` (never the URL a hook names).
    pub repository: String,
    /// Its deploy key (Nix format, secret); hosts trust it with
    /// `may = ["deploy", "read"]`.
    pub key_file: PathBuf,
    /// CA certificates (PEM) trusted besides the system's roots for its own
    /// HTTPS: the forge's API, the hosts and their caches (added to what
    /// push.toml trusts for them). The git fetch goes through libgit2 and
    /// OpenSSL, which `SSL_CERT_FILE` points elsewhere.
    pub ca_file: Option<PathBuf>,
    /// Credentials for fetching.
    #[serde(default)]
    pub git: GitCredentials,
    /// The forge that sends hooks and takes commit statuses.
    pub forge: ForgeSection,
    /// The build machine's own settings (never the repository's).
    #[serde(default)]
    pub build: BuildSection,
    /// Which branches deploy which hosts (`[[follow]]`).
    pub follow: Vec<Follow>,
    /// Its channel for the hosts that pull (`pull = true` in push.toml).
    #[serde(default)]
    pub channel: ChannelSection,
}

/// `[channel]`: push serve's channel (`/v1/channel`), where the hosts that
/// pull read their desired state and post their reports.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// Public keys (`NAME:BASE64`) that may publish to it besides push
    /// serve's own deploy key (`push publish --channel
    /// https://SERVE/v1/channel` with an operator's key).
    #[serde(default)]
    pub publishers: Vec<deployd_protocol::PublicKey>,
    /// How long a desired state push serve publishes for a followed
    /// branch's pull host is valid, in seconds: 1 to 366 days (default 30
    /// days; a host accepts at most its own `max_desired_age_s`).
    #[serde(default = "default_desired_lifetime_s")]
    pub desired_lifetime_s: u64,
    /// How long a rollout waits for a pull host's final report before it
    /// counts the host `published` and goes on (its status on the commit
    /// is set when the report comes), in seconds: 0 to 3600 (default 600).
    #[serde(default = "default_report_wait_s")]
    pub report_wait_s: u64,
}

impl Default for ChannelSection {
    fn default() -> Self {
        ChannelSection {
            publishers: Vec::new(),
            desired_lifetime_s: default_desired_lifetime_s(),
            report_wait_s: default_report_wait_s(),
        }
    }
}

/// `2592000`: 30 days.
fn default_desired_lifetime_s() -> u64 {
    deployd_protocol::DEFAULT_MAX_DESIRED_AGE_S
}

/// `600`: 10 minutes.
fn default_report_wait_s() -> u64 {
    600
}

/// `[git]`: how to authenticate the fetch.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitCredentials {
    /// The user name for `https://` (with `password_file`) or `ssh://`.
    pub username: Option<String>,
    /// A file holding the password or access token for `https://`.
    pub password_file: Option<PathBuf>,
    /// A file holding the SSH private key for `ssh://`.
    pub ssh_key_file: Option<PathBuf>,
}

/// Which forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub (or GitHub Enterprise).
    Github,
    /// Gitea.
    Gitea,
    /// Forgejo.
    Forgejo,
    /// GitLab.
    Gitlab,
}

impl ForgeKind {
    /// Its name in URLs and config (`github`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Forgejo => "forgejo",
            ForgeKind::Gitlab => "gitlab",
        }
    }
}

/// `[forge]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeSection {
    /// `github`, `gitea`, `forgejo` or `gitlab`.
    pub kind: ForgeKind,
    /// The forge's API base (`https://api.github.com`, `https://git.example.org`).
    pub api_url: String,
    /// `owner/name`; GitLab: the project's path or numeric id.
    pub repository: String,
    /// The webhook's secret (GitLab: its token).
    pub secret_file: PathBuf,
    /// The token commit statuses are posted with; without it none are.
    pub token_file: Option<PathBuf>,
}

/// The secrets, read from their files.
pub struct Secrets {
    /// The webhook secret (GitLab: token).
    pub webhook: Vec<u8>,
    /// The forge API token, if statuses are posted.
    pub forge_token: Option<String>,
}

/// `public_url` must be an http(s) URL without credentials, query or
/// fragment (the links are made by appending a page's path to it).
fn check_public_url(public_url: &str) -> Result<()> {
    let url = reqwest::Url::parse(public_url)
        .map_err(|error| anyhow::anyhow!("public_url {public_url:?} is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("public_url {public_url:?} must be an http(s):// URL with a host");
    }
    if url_credentials(public_url).is_some() || !url.username().is_empty() {
        bail!(
            "public_url {:?} has a user or password in it: every commit status would show it",
            mask_credentials(public_url)
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("public_url {public_url:?} must not have a query or fragment: page paths are appended to it");
    }
    Ok(())
}

/// `"[::]:9798"`: port 9798 on every address, IPv6 and IPv4.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0u16; 8], 9798))
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/deployd-forge")
}

impl ServeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<ServeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: ServeConfig = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "invalid config {}: {}",
                path.display(),
                crate::inventory::one_line(&mask_credentials(&error.to_string()))
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let scheme = self.repository.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("file" | "http" | "https" | "ssh")) {
            bail!(
                "repository {:?} must be a file://, http(s):// or ssh:// URL",
                mask_credentials(&self.repository)
            );
        }
        let authority = self
            .repository
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        // A URL is logged and shown in the status: no secret may be in it.
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if !self.repository.starts_with("ssh://") {
                bail!(
                    "repository must not hold credentials: give [git] username and password_file"
                );
            }
            if userinfo.contains(':') {
                bail!("repository must not hold a password: give [git] ssh_key_file");
            }
        }
        // Over plain http:// anyone on the way reads a password.
        if self.git.password_file.is_some() && scheme == Some("http") {
            bail!("[git] password_file: a password is only sent over https://, not http://");
        }
        self.build.validate()?;
        let lifetime = self.channel.desired_lifetime_s;
        if lifetime == 0 || lifetime > deployd_protocol::LONGEST_DESIRED_AGE_S {
            bail!(
                "[channel] desired_lifetime_s must be 1 to {} (366 days)",
                deployd_protocol::LONGEST_DESIRED_AGE_S
            );
        }
        if self.channel.report_wait_s > 3600 {
            bail!("[channel] report_wait_s must be 0 to 3600");
        }
        if !self.state_dir.is_absolute() {
            bail!("state_dir must be an absolute path");
        }
        let api = &self.forge.api_url;
        if url_credentials(api).is_some() {
            bail!(
                "[forge] api_url {:?} has a user or password in it; credentials never go in a URL (logs and statuses show it): the forge's token goes in token_file",
                mask_credentials(api)
            );
        }
        if !(api.starts_with("http://") || api.starts_with("https://")) || api.contains(' ') {
            bail!("[forge] api_url {api:?} must be an http(s):// URL");
        }
        let repository = &self.forge.repository;
        let numeric = repository.chars().all(|c| c.is_ascii_digit());
        let owner_name = repository
            .split('/')
            .filter(|part| !part.is_empty())
            .count()
            >= 2;
        if repository.is_empty()
            || !(owner_name || (numeric && self.forge.kind == ForgeKind::Gitlab))
        {
            bail!("[forge] repository {repository:?} must be owner/name (GitLab: a path or a numeric id)");
        }
        if let Some(public_url) = &self.public_url {
            check_public_url(public_url)?;
        }
        if self.follow.is_empty() {
            bail!("no [[follow]]: no push would ever deploy anything");
        }
        let mut branches = std::collections::BTreeSet::new();
        for follow in &self.follow {
            if follow.branch.is_empty()
                || follow.branch.starts_with("refs/")
                || !git2::Reference::is_valid_name(&format!("refs/heads/{}", follow.branch))
            {
                bail!("[[follow]] branch {:?} is not a branch name", follow.branch);
            }
            if !branches.insert(&follow.branch) {
                bail!("[[follow]] branch {:?} appears twice", follow.branch);
            }
            if follow.hosts.is_empty() {
                bail!("[[follow]] {}: hosts is empty", follow.branch);
            }
            follow.selectors()?;
            follow.policy()?;
            if let Some(0) | Some(3601..) = follow.confirm_s {
                bail!("[[follow]] {}: confirm_s must be 1 to 3600", follow.branch);
            }
        }
        Ok(())
    }

    /// `path` (from `/`) on the pages as people reach them, if
    /// `public_url` is set.
    pub fn page_url(&self, path: &str) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(format!("{}{path}", base.trim_end_matches('/')))
    }

    /// The `[[follow]]` of `branch`.
    pub fn following(&self, branch: &str) -> Option<&Follow> {
        self.follow.iter().find(|follow| follow.branch == branch)
    }

    /// Reads the CA file, if there is one (checked: PEM certificates that
    /// can be trust anchors).
    pub fn read_ca_file(&self) -> Result<Option<Arc<CaFile>>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        Ok(Some(Arc::new(CaFile::load(path).context("ca_file")?)))
    }

    /// Reads the secret files (the webhook secret must not be empty).
    pub fn read_secrets(&self) -> Result<Secrets> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut webhook = read(&self.forge.secret_file)?;
        trim_line_end(&mut webhook);
        if webhook.is_empty() {
            bail!(
                "the webhook secret {} is empty",
                self.forge.secret_file.display()
            );
        }
        let forge_token =
            match &self.forge.token_file {
                Some(path) => {
                    let mut token = read(path)?;
                    trim_line_end(&mut token);
                    Some(String::from_utf8(token).with_context(|| {
                        format!("the forge token {} is not text", path.display())
                    })?)
                }
                None => None,
            };
        for path in [
            &self.git.password_file,
            &self.git.ssh_key_file,
            &self.build.sign_key_file,
        ]
        .into_iter()
        .flatten()
        {
            read(path)?;
        }
        deployd_protocol::SecretKey::load(&self.key_file)
            .with_context(|| format!("cannot use the deploy key {}", self.key_file.display()))?;
        Ok(Secrets {
            webhook,
            forge_token,
        })
    }
}

impl ServeConfig {
    /// Every secret file the service is given.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        [
            Some(&self.key_file),
            Some(&self.forge.secret_file),
            self.forge.token_file.as_ref(),
            self.git.password_file.as_ref(),
            self.git.ssh_key_file.as_ref(),
            self.build.sign_key_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The clone of the repository, in the state directory.
    pub fn clone_dir(&self) -> PathBuf {
        self.state_dir.join("repository")
    }

    /// How rollouts build: `[build]`, with its user, whose home is
    /// `state_dir/build`.
    pub fn build_machine(&self) -> BuildMachine {
        let build = &self.build;
        BuildMachine {
            build_host: build.build_host.clone(),
            copy_to: build.copy_to.clone(),
            sign_key_file: build.sign_key_file.clone(),
            build_user: Some(Arc::new(BuildUser {
                user: build.user.clone(),
                group: build.group.clone(),
                home: self.state_dir.join("build"),
                // As git sees it, for its safe.directory.
                repository: std::fs::canonicalize(self.clone_dir())
                    .unwrap_or_else(|_| self.clone_dir()),
                secret_files: self.secret_files(),
            })),
        }
    }
}

/// Secret files often end with a newline their writer added.
fn trim_line_end(bytes: &mut Vec<u8>) {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use deployd_protocol::Action;

    pub(crate) const VALID: &str = "repository = \"file:///srv/fleet.git\"\nkey_file = \"/k\"\nstate_dir = \"/var/lib/f\"\n\
        [forge]\nkind = \"forgejo\"\napi_url = \"https://git.example.org\"\nrepository = \"ops/fleet\"\nsecret_file = \"/s\"\n\
        [[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n";

    pub(crate) fn parse(text: &str) -> Result<ServeConfig> {
        let config: ServeConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_valid_config_and_its_defaults() {
        let ssh = VALID.replace(
            "file:///srv/fleet.git",
            "ssh://git@git.example.org:22/f.git",
        );
        parse(&ssh).expect("a user name in an ssh:// URL is no secret");
        let config = parse(VALID).expect("valid");
        assert_eq!(config.listen.port(), 9798);
        assert_eq!(config.follow[0].action, Action::Switch);
        assert_eq!(config.forge.kind, ForgeKind::Forgejo);
        assert!(config.following("main").is_some());
        assert!(config.following("dev").is_none());
    }

    #[test]
    fn bad_configs_are_refused() {
        for (change, expected) in [
            (("file:///srv", "/srv"), "must be a file://"),
            (("forgejo", "bitbucket"), "unknown variant"),
            (("ops/fleet", "fleet"), "owner/name"),
            (("\"main\"", "\"refs/heads/main\""), "not a branch name"),
            (("\"main\"", "\"a..b\""), "not a branch name"),
            (("[\"*\"]", "[]"), "hosts is empty"),
            (("[\"*\"]", "[\"not a host\"]"), "main"),
            (
                ("state_dir = \"/var/lib/f\"", "state_dir = \"f\""),
                "absolute",
            ),
            (("secret_file", "secret"), "unknown field"),
            (
                (
                    "file:///srv/fleet.git",
                    "https://oauth2:t0ken@git.example.org/f.git",
                ),
                "credentials",
            ),
            (
                (
                    "file:///srv/fleet.git",
                    "ssh://git:pw@git.example.org/f.git",
                ),
                "password",
            ),
            (
                ("file:///srv/fleet.git", "git.example.org:f.git"),
                "must be a file://",
            ),
            (
                (
                    "https://git.example.org\"",
                    "https://bot:s3cret@git.example.org\"",
                ),
                "[forge] api_url \"https://bot:***@git.example.org\" has a user or password in it; credentials never go in a URL (logs and statuses show it): the forge's token goes in token_file",
            ),
            (
                ("[forge]", "[build]\ncopy_to = \"file://relative\"\n[forge]"),
                "[build] copy_to",
            ),
            (
                ("[forge]", "[channel]\ndesired_lifetime_s = 0\n[forge]"),
                "desired_lifetime_s must be 1 to",
            ),
            (
                ("[forge]", "[channel]\nreport_wait_s = 3601\n[forge]"),
                "report_wait_s must be 0 to 3600",
            ),
            (
                ("[forge]", "[channel]\npublishers = [\"ops-1\"]\n[forge]"),
                "publishers",
            ),
            (
                ("key_file", "public_url = \"deploy.example.org\"\nkey_file"),
                "is not a URL",
            ),
            (
                ("key_file", "public_url = \"ftp://deploy.example.org\"\nkey_file"),
                "must be an http(s):// URL",
            ),
            (
                (
                    "key_file",
                    "public_url = \"https://ops:s3cret@deploy.example.org\"\nkey_file",
                ),
                "has a user or password",
            ),
            (
                (
                    "key_file",
                    "public_url = \"https://deploy.example.org/?a=b\"\nkey_file",
                ),
                "query or fragment",
            ),
        ] {
            let text = VALID.replace(change.0, change.1);
            let error = parse(&text).expect_err(&text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let twice = format!("{VALID}[[follow]]\nbranch = \"main\"\nhosts = [\"a\"]\n");
        assert!(parse(&twice).is_err());
        let no_follow = VALID.split("[[follow]]").next().expect("head");
        assert!(parse(no_follow).is_err());
        let confirm = format!("{VALID}confirm_s = 0\n");
        assert!(parse(&confirm).is_err());
    }

    #[test]
    fn page_links_are_made_on_the_public_url() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.page_url("/rollouts/3"), None);
        for base in ["https://deploy.example.org", "https://deploy.example.org/"] {
            let text = VALID.replace("key_file", &format!("public_url = \"{base}\"\nkey_file"));
            let config = parse(&text).expect("valid");
            assert_eq!(
                config.page_url("/rollouts/3").as_deref(),
                Some("https://deploy.example.org/rollouts/3")
            );
        }
        let text = VALID.replace(
            "key_file",
            "public_url = \"https://ops.example.org/deploy/\"\nkey_file",
        );
        let config = parse(&text).expect("valid under a path");
        assert_eq!(
            config.page_url("/hosts/sambirano").as_deref(),
            Some("https://ops.example.org/deploy/hosts/sambirano")
        );
    }

    #[test]
    fn the_ca_file_is_read_and_checked() {
        let config = parse(VALID).expect("valid");
        assert!(config.read_ca_file().expect("none").is_none());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        let with_ca = format!("ca_file = \"{}\"\n{VALID}", path.display());
        let config = parse(&with_ca).expect("valid without reading the file");
        let error = config.read_ca_file().expect_err("missing");
        assert!(
            format!("{error:#}").starts_with("ca_file: cannot read the CA file"),
            "{error:#}"
        );
        std::fs::write(&path, include_str!("../../tests/fixtures/tls/ca.pem")).expect("write");
        assert!(config.read_ca_file().expect("read").is_some());
    }

    #[test]
    fn a_password_goes_over_https_only() {
        let login = "[git]\nusername = \"deployd\"\npassword_file = \"/t\"\n[forge]";
        let over = |url: &str| {
            VALID
                .replace("file:///srv/fleet.git", url)
                .replace("[forge]", login)
        };
        let error = parse(&over("http://git.example.org/f.git")).expect_err("http");
        assert!(error.to_string().contains("https://"), "{error}");
        parse(&over("https://git.example.org/f.git")).expect("https");
        // A user name alone is no secret.
        let user = VALID
            .replace("file:///srv/fleet.git", "http://git.example.org/f.git")
            .replace("[forge]", "[git]\nusername = \"deployd\"\n[forge]");
        parse(&user).expect("a user name over http");
    }

    #[test]
    fn the_build_user_may_read_no_secret_and_evaluates_in_its_home() {
        let text = VALID
            .replace(
                "[forge]",
                "[git]\npassword_file = \"/g\"\n\
                 [build]\ncopy_to = \"file:///c\"\nsign_key_file = \"/c.secret\"\n[forge]",
            )
            .replace(
                "secret_file = \"/s\"",
                "secret_file = \"/s\"\ntoken_file = \"/t\"",
            );
        let config = parse(&text).expect("valid");
        assert_eq!(
            config.secret_files(),
            ["/k", "/s", "/t", "/g", "/c.secret"].map(PathBuf::from)
        );
        let machine = config.build_machine();
        assert_eq!(machine.copy_to.as_deref(), Some("file:///c"));
        let user = machine.build_user.expect("a build user");
        assert_eq!(user.user, "deployd-forge-build");
        assert_eq!(user.home, PathBuf::from("/var/lib/f/build"));
        assert_eq!(user.repository, PathBuf::from("/var/lib/f/repository"));
        assert_eq!(user.secret_files, config.secret_files());
    }
}
