//! `[build]` in push serve's config: the build machine's own settings,
//! never the repository's. Where to build (`build_host`), where the
//! closures go (`copy_to`) and the key that signs them there
//! (`sign_key_file`), and the user that evaluates and builds the flake
//! (`user`, `group`): not the service's, so that a commit's flake cannot
//! read the service's secrets. push.toml's `build_host`, `copy_to` and
//! `sign_key_file` are ignored (the worker logs that it ignored them).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::inventory::Defaults;

/// `[build]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// Build there over SSH (`user@host`, ssh-ng) instead of on this machine.
    pub build_host: Option<String>,
    /// Copy built closures to this store (the hosts' cache): `file:///srv/cache`,
    /// `ssh://`, `ssh-ng://`, `s3://`, `http(s)://`.
    pub copy_to: Option<String>,
    /// Sign the closures with this cache key (secret, absolute path) while
    /// copying them to `copy_to`.
    pub sign_key_file: Option<PathBuf>,
    /// The user that evaluates and builds the flake (a name or a number):
    /// never root nor the service's user; it must not be able to read any
    /// of the service's secret files.
    #[serde(default = "default_user")]
    pub user: String,
    /// Its group (a name or a number), through which it reads the
    /// service's clone of the repository.
    #[serde(default = "default_group")]
    pub group: String,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection {
            build_host: None,
            copy_to: None,
            sign_key_file: None,
            user: default_user(),
            group: default_group(),
        }
    }
}

fn default_user() -> String {
    "deployd-forge-build".into()
}

fn default_group() -> String {
    "deployd-forge".into()
}

/// The store URL schemes `nix copy --to` writes to.
const COPY_SCHEMES: [&str; 6] = ["file", "ssh", "ssh-ng", "s3", "http", "https"];

impl BuildSection {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if let Some(build_host) = &self.build_host {
            crate::nix::check_build_host(build_host)
                .map_err(|error| anyhow::anyhow!("[build] build_host: {error}"))?;
        }
        if let Some(copy_to) = &self.copy_to {
            check_copy_to(copy_to)?;
        }
        if let Some(path) = &self.sign_key_file {
            if !path.is_absolute() {
                bail!("[build] sign_key_file must be an absolute path");
            }
            if self.copy_to.is_none() {
                bail!("[build] sign_key_file signs what is copied: give copy_to too");
            }
        }
        for (name, value) in [("user", &self.user), ("group", &self.group)] {
            let plain = value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if value.is_empty() || value.starts_with('-') || !plain {
                bail!("[build] {name} {value:?} is not a user or group name or number");
            }
            if value == "root" || value.trim_start_matches('0').is_empty() {
                bail!("[build] {name} must not be root: root can read every secret");
            }
        }
        Ok(())
    }

    /// The settings push.toml's `[defaults]` gives that push serve ignores.
    pub fn ignored_in(defaults: &Defaults) -> Vec<&'static str> {
        let set = [
            ("build_host", defaults.build_host.is_some()),
            ("copy_to", defaults.copy_to.is_some()),
            ("sign_key_file", defaults.sign_key_file.is_some()),
            ("key_file", defaults.key_file.is_some()),
        ];
        set.into_iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| name)
            .collect()
    }
}

/// A `copy_to` Nix can write to, with no secret in it.
fn check_copy_to(copy_to: &str) -> Result<()> {
    let Some((scheme, rest)) = copy_to.split_once("://") else {
        bail!("[build] copy_to {copy_to:?} must be a store URL (file:///srv/cache, ssh-ng://host, s3://bucket)");
    };
    if !COPY_SCHEMES.contains(&scheme) {
        bail!(
            "[build] copy_to {copy_to:?}: the scheme must be one of {}",
            COPY_SCHEMES.join(", ")
        );
    }
    if copy_to.chars().any(|c| c.is_whitespace() || c.is_control()) || rest.is_empty() {
        bail!("[build] copy_to {copy_to:?} is not a store URL");
    }
    if scheme == "file" && !Path::new(rest.split('?').next().unwrap_or("")).is_absolute() {
        bail!("[build] copy_to {copy_to:?}: a file:// store needs an absolute path (file:///srv/cache)");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    {
        bail!("[build] copy_to must not hold a password");
    }
    if copy_to.contains("secret-key=") {
        bail!("[build] copy_to must not name a key: give sign_key_file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BuildSection> {
        let section: BuildSection = toml::from_str(text)?;
        section.validate()?;
        Ok(section)
    }

    #[test]
    fn the_build_machine_and_its_user() {
        let section = parse(
            "build_host = \"nix-builder@kelyus\"\ncopy_to = \"s3://fleet-cache?region=eu-west-1\"\n\
             sign_key_file = \"/run/agenix/cache.secret\"\n",
        )
        .expect("valid");
        assert_eq!(section.user, "deployd-forge-build");
        assert_eq!(section.group, "deployd-forge");
        let empty = parse("").expect("an empty [build]");
        assert_eq!(empty.copy_to, None);
        for good in [
            "copy_to = \"file:///srv/cache\"",
            "copy_to = \"ssh-ng://nix-ssh@kelyus\"",
            "copy_to = \"https://cache.example.org\"\nuser = \"64123\"\ngroup = \"64123\"",
        ] {
            parse(good).expect(good);
        }
    }

    #[test]
    fn bad_build_sections_are_refused() {
        for (text, expected) in [
            ("build_host = \"-oProxyCommand=x\"", "build_host"),
            ("copy_to = \"/srv/cache\"", "store URL"),
            ("copy_to = \"gopher://x\"", "scheme"),
            ("copy_to = \"file://srv/cache\"", "absolute"),
            ("copy_to = \"s3://a b\"", "not a store URL"),
            ("copy_to = \"https://u:pw@cache\"", "password"),
            ("copy_to = \"file:///srv?secret-key=/k\"", "sign_key_file"),
            (
                "copy_to = \"file:///srv\"\nsign_key_file = \"keys/cache.secret\"",
                "absolute",
            ),
            ("sign_key_file = \"/k\"", "copy_to"),
            ("user = \"root\"", "root"),
            ("user = \"0\"", "root"),
            ("group = \"00\"", "root"),
            ("user = \"\"", "user"),
            ("user = \"a b\"", "user"),
            ("group = \"-g\"", "group"),
            ("users = \"x\"", "unknown field"),
        ] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn names_what_push_toml_sets_and_serve_ignores() {
        let defaults: Defaults = toml::from_str(
            "copy_to = \"file:///elsewhere\"\nsign_key_file = \"/run/agenix/ci-1.secret\"\nport = 9797\n",
        )
        .expect("defaults");
        assert_eq!(
            BuildSection::ignored_in(&defaults),
            ["copy_to", "sign_key_file"]
        );
        let none: Defaults = toml::from_str("port = 9797\n").expect("defaults");
        assert!(BuildSection::ignored_in(&none).is_empty());
    }
}
