//! Credentials in URLs: found (so configs can refuse them) and masked (so
//! that no command line, program output, log line, error or status shows
//! them, whatever brought them in: an earlier config, another program's
//! output).
//!
//! A URL's credentials are its userinfo: what comes between `SCHEME://` and
//! the last `@` before the authority ends (at `/`, `?`, `#`, a space or a
//! quote). Masking keeps the user and hides the password, `user:***@`; a
//! user that looks like a token (20 characters or more: GitHub, GitLab and
//! attic tokens all are) is hidden too, also without a password
//! (`https://TOKEN@host`), except in SSH URLs (`ssh://`, `ssh-ng://`), whose
//! user is a login name and never a secret.

use std::borrow::Cow;
use std::ops::Range;

/// What is shown instead of a secret.
pub const MASK: &str = "***";
/// A user name this long is taken for a token.
const TOKEN_LENGTH: usize = 20;

/// One URL's userinfo, where it stands in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Userinfo {
    /// The URL's scheme (`https`, `ssh-ng`; empty when none comes before
    /// `://`).
    scheme: Range<usize>,
    /// The userinfo, without its `@`.
    userinfo: Range<usize>,
    /// The host and port that follow the `@`.
    host: Range<usize>,
}

/// Every userinfo of every URL in `text`, in order.
fn userinfos(text: &str) -> Vec<Userinfo> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let separator = from + at;
        let authority_start = separator + 3;
        let scheme_start = text[..separator]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(separator, |(index, _)| index);
        let rest = &text[authority_start..];
        let authority_length = rest
            .find(|c: char| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '/' | '?' | '#' | '\'' | '"' | '`' | '<' | '>' | '\\')
            })
            .unwrap_or(rest.len());
        let authority = &rest[..authority_length];
        if let Some(last_at) = authority.rfind('@') {
            found.push(Userinfo {
                scheme: scheme_start..separator,
                userinfo: authority_start..authority_start + last_at,
                host: authority_start + last_at + 1..authority_start + authority_length,
            });
        }
        from = authority_start;
    }
    found
}

fn is_ssh(scheme: &str) -> bool {
    scheme.to_ascii_lowercase().contains("ssh")
}

fn looks_like_token(user: &str) -> bool {
    user.chars().count() >= TOKEN_LENGTH
}

/// `text` with the credentials of every URL in it masked: `user:***@` for
/// a password, `***` for a user that looks like a token. Text without any
/// comes back borrowed; masking twice changes nothing more.
pub fn mask_credentials(text: &str) -> Cow<'_, str> {
    let mut masked = String::new();
    let mut copied = 0;
    for found in userinfos(text) {
        let userinfo = &text[found.userinfo.clone()];
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let hide_user = looks_like_token(user) && !is_ssh(&text[found.scheme.clone()]);
        let shown_user = if hide_user { MASK } else { user };
        let shown = match password {
            Some(_) => format!("{shown_user}:{MASK}"),
            None => shown_user.to_owned(),
        };
        if shown == userinfo {
            continue;
        }
        masked.push_str(&text[copied..found.userinfo.start]);
        masked.push_str(&shown);
        copied = found.userinfo.end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// Credentials found in a URL that a config gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCredentials {
    /// The URL's scheme, lower case.
    pub scheme: String,
    /// The user named (perhaps empty).
    pub user: String,
    /// The host and port the credentials are for.
    pub host: String,
    /// Whether a password was given.
    pub has_password: bool,
}

impl UrlCredentials {
    /// The host without its port (netrc's `machine`).
    pub fn machine(&self) -> &str {
        if self.host.starts_with('[') {
            return self.host.split_inclusive(']').next().unwrap_or(&self.host);
        }
        self.host.split(':').next().unwrap_or(&self.host)
    }

    /// Where such credentials belong instead, for a Nix store URL
    /// (substituters, `copy_to`): Nix's netrc file for HTTP caches, an AWS
    /// profile for S3, an SSH key for SSH stores.
    pub fn where_they_go(&self) -> String {
        let user = if self.user.is_empty() || looks_like_token(&self.user) {
            "USER"
        } else {
            &self.user
        };
        if is_ssh(&self.scheme) {
            return format!(
                "an SSH store logs in with a key (in the SSH config of the user running Nix), never a password: give {}://{user}@{}",
                self.scheme, self.host
            );
        }
        if self.scheme == "s3" {
            return "S3 credentials go in an AWS profile (~/.aws/credentials of the user running Nix), named by ?profile=NAME in the URL".to_owned();
        }
        format!(
            "give the URL without them and put them in Nix's netrc-file: a line \"machine {} login {user} password PASSWORD\" in a file kept secret, named by netrc-file in nix.conf (on NixOS: nix.settings.netrc-file = \"/run/agenix/nix-netrc\")",
            self.machine()
        )
    }
}

/// The first credentials in `url` that a config must not hold: a password
/// anywhere (also in a URL inside the query, like S3's `endpoint=`), or a
/// user in any scheme but SSH's (whose user is a login name).
pub fn url_credentials(url: &str) -> Option<UrlCredentials> {
    userinfos(url).into_iter().find_map(|found| {
        let scheme = url[found.scheme].to_ascii_lowercase();
        let userinfo = &url[found.userinfo];
        let (user, has_password) = match userinfo.split_once(':') {
            Some((user, _)) => (user, true),
            None => (userinfo, false),
        };
        (has_password || !is_ssh(&scheme)).then(|| UrlCredentials {
            scheme,
            user: user.to_owned(),
            host: url[found.host].to_owned(),
            has_password,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn masks(text: &str, expected: &str) {
        assert_eq!(mask_credentials(text), expected);
        // Masking what is masked changes nothing.
        assert_eq!(mask_credentials(expected), expected);
    }

    #[test]
    fn a_password_is_masked_and_the_user_kept() {
        masks(
            "https://alice:s3cret@cache.example/nix?priority=10",
            "https://alice:***@cache.example/nix?priority=10",
        );
        masks(
            "http://alice:s3cret@cache:5000",
            "http://alice:***@cache:5000",
        );
        masks("http://alice:@cache", "http://alice:***@cache");
        masks("http://:s3cret@cache", "http://:***@cache");
    }

    #[test]
    fn urls_in_the_middle_of_nix_lines() {
        masks(
            "warning: error: unable to download 'http://alice:s3cret@10.0.0.1:5000/nix-cache-info': Couldn't connect to server (7); retrying in 291 ms",
            "warning: error: unable to download 'http://alice:***@10.0.0.1:5000/nix-cache-info': Couldn't connect to server (7); retrying in 291 ms",
        );
        masks(
            "deployd: fetching with nix-store --realise /nix/store/x --option substituters http://alice:s3cret@a:5000 https://bob:hunter2@b/nix --option trusted-public-keys k:x=",
            "deployd: fetching with nix-store --realise /nix/store/x --option substituters http://alice:***@a:5000 https://bob:***@b/nix --option trusted-public-keys k:x=",
        );
    }

    #[test]
    fn quoted_urls() {
        masks(
            "substituters = \"https://alice:s3cret@cache\"",
            "substituters = \"https://alice:***@cache\"",
        );
        masks("`http://a:b@c`", "`http://a:***@c`");
        masks("<http://a:b@c>", "<http://a:***@c>");
        masks(
            "{\"url\":\"http://a:b@c\\\"\"}",
            "{\"url\":\"http://a:***@c\\\"\"}",
        );
    }

    #[test]
    fn a_password_with_an_at_sign_or_encoded_characters() {
        masks("http://alice:p@ss@cache/x", "http://alice:***@cache/x");
        masks("http://alice:p%40ss%3A@cache/x", "http://alice:***@cache/x");
        masks(
            "http://alice:s3cret@[fd00::1]:5000/x",
            "http://alice:***@[fd00::1]:5000/x",
        );
    }

    #[test]
    fn s3_urls_keep_their_profile_and_lose_a_nested_password() {
        masks(
            "s3://fleet-cache?profile=deploy&region=eu-west-1",
            "s3://fleet-cache?profile=deploy&region=eu-west-1",
        );
        masks(
            "s3://fleet-cache?profile=deploy&endpoint=https://minio:s3cret@minio.lan:9000",
            "s3://fleet-cache?profile=deploy&endpoint=https://minio:***@minio.lan:9000",
        );
        masks(
            "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@fleet-cache",
            "s3://***:***@fleet-cache",
        );
    }

    #[test]
    fn ssh_users_are_no_secret() {
        masks("ssh-ng://nix-ssh@kelyus", "ssh-ng://nix-ssh@kelyus");
        masks(
            "copy --to ssh://deploy-automation-account@kelyus",
            "copy --to ssh://deploy-automation-account@kelyus",
        );
        masks("ssh-ng://nix:pw@kelyus", "ssh-ng://nix:***@kelyus");
        masks(
            "git+ssh://git@forge/ops/fleet",
            "git+ssh://git@forge/ops/fleet",
        );
    }

    #[test]
    fn a_token_as_user_is_masked_and_a_short_user_kept() {
        masks(
            "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/ops/fleet",
            "https://***@github.com/ops/fleet",
        );
        masks(
            "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a:x-oauth-basic@github.com",
            "https://***:***@github.com",
        );
        masks("https://alice@cache.example", "https://alice@cache.example");
    }

    #[test]
    fn several_per_line_and_text_without_urls() {
        masks(
            "a http://u:p@h1 b ssh-ng://u@h2 c https://v:q@h3/x d",
            "a http://u:***@h1 b ssh-ng://u@h2 c https://v:***@h3/x d",
        );
        for plain in [
            "",
            "copying path '/nix/store/abc-x' from 'http://10.0.0.1:5000'...",
            "mail alice@example.org about http://cache/x@y",
            "file:///srv/cache",
            "://",
            "x://@",
        ] {
            assert!(
                matches!(mask_credentials(plain), Cow::Borrowed(_)),
                "{plain}"
            );
        }
        masks("étrange://ü:ß@höst", "étrange://ü:***@höst");
    }

    #[test]
    fn what_a_config_must_not_hold() {
        let found = url_credentials("https://alice:s3cret@cache.example:8443/nix").expect("found");
        assert_eq!(found.scheme, "https");
        assert_eq!(found.user, "alice");
        assert_eq!(found.host, "cache.example:8443");
        assert_eq!(found.machine(), "cache.example");
        assert!(found.has_password);
        assert!(found
            .where_they_go()
            .contains("\"machine cache.example login alice password PASSWORD\""));
        assert!(found.where_they_go().contains("nix.settings.netrc-file"));

        let user_only = url_credentials("https://alice@cache").expect("a user is refused");
        assert!(!user_only.has_password);
        let nested =
            url_credentials("s3://c?profile=p&endpoint=http://minio:pw@m:9000").expect("nested");
        assert_eq!(nested.host, "m:9000");
        let s3 = url_credentials("s3://KEY:SECRET@bucket").expect("s3");
        assert!(s3.where_they_go().contains("?profile=NAME"), "{s3:?}");
        let ssh = url_credentials("ssh-ng://nix:pw@kelyus").expect("ssh password");
        assert!(ssh.where_they_go().contains("ssh-ng://nix@kelyus"));
        assert_eq!(
            url_credentials("http://alice:pw@[fd00::1]:5000/")
                .expect("v6")
                .machine(),
            "[fd00::1]"
        );

        for clean in [
            "http://kelyus:5000",
            "https://cache.nixos.org/",
            "ssh-ng://nix-ssh@kelyus",
            "ssh://root@kelyus?remote-store=local",
            "file:///srv/cache",
            "s3://fleet?profile=deploy&region=eu-west-1",
            "daemon",
        ] {
            assert_eq!(url_credentials(clean), None, "{clean}");
        }
    }
}
