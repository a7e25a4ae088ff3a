//! `ChannelUrl`: where a pulling host reads its desired state
//! (docs/src/design/channels.md): an `http://` or `https://` base URL, or a
//! `file://` folder on the host. The files under it are joined here, in
//! pure functions: `hosts/<host>.json` (with `?after=N&wait=S` for a
//! long poll) and `reports/<host>`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use deployd_command::redact::{mask_credentials, url_credentials};
use deployd_protocol::HostName;

use crate::http_url::HttpUrl;

/// A channel: its base URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum ChannelUrl {
    /// An HTTP(S) location.
    Http(HttpUrl),
    /// A folder on this host (`file:///srv/channel`).
    Folder(PathBuf),
}

/// A text that is not a channel URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelUrlError {
    /// Neither `http(s)://host[:port]/path` nor `file:///absolute/path`.
    #[error("{0:?} is not a channel: http://, https:// or file:///absolute/path, without a query")]
    Malformed(String),
    /// A URL with a user or password (shown masked).
    #[error("{0:?} has a user or password in it; credentials never go in a URL (logs, errors and statuses show it, and the config may be readable by all): a channel holds only signed, public states, so serve it without credentials")]
    Credentials(String),
}

impl ChannelUrl {
    /// The URL of `host`'s desired state on an HTTP(S) channel; with
    /// `long_poll`, `(after, wait_s)`, the query push serve holds.
    pub fn state_url(base: &HttpUrl, host: &HostName, long_poll: Option<(u64, u64)>) -> HttpUrl {
        let mut text = format!(
            "{}/hosts/{host}.json",
            base.to_string().trim_end_matches('/')
        );
        if let Some((after, wait_s)) = long_poll {
            text.push_str(&format!("?after={after}&wait={wait_s}"));
        }
        text.parse()
            .unwrap_or_else(|_| unreachable!("a channel URL and a host name make a URL"))
    }

    /// The URL `host`'s reports are posted to.
    pub fn reports_url(base: &HttpUrl, host: &HostName) -> HttpUrl {
        format!("{}/reports/{host}", base.to_string().trim_end_matches('/'))
            .parse()
            .unwrap_or_else(|_| unreachable!("a channel URL and a host name make a URL"))
    }

    /// The file of `host`'s desired state in a folder channel.
    pub fn state_file(folder: &std::path::Path, host: &HostName) -> PathBuf {
        folder.join("hosts").join(format!("{host}.json"))
    }
}

impl FromStr for ChannelUrl {
    type Err = ChannelUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || ChannelUrlError::Malformed(mask_credentials(text).into_owned());
        if url_credentials(text).is_some() {
            return Err(ChannelUrlError::Credentials(
                mask_credentials(text).into_owned(),
            ));
        }
        if text.contains(['?', '#']) {
            return Err(malformed());
        }
        let trimmed = text.trim_end_matches('/');
        if let Some(path) = text.strip_prefix("file://") {
            let path = PathBuf::from(path.trim_end_matches('/'));
            if !path.is_absolute() || path.as_os_str().to_string_lossy().contains('\n') {
                return Err(malformed());
            }
            return Ok(ChannelUrl::Folder(path));
        }
        let url: HttpUrl = trimmed.parse().map_err(|_| malformed())?;
        Ok(ChannelUrl::Http(url))
    }
}

impl TryFrom<String> for ChannelUrl {
    type Error = ChannelUrlError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for ChannelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelUrl::Http(url) => write!(f, "{url}"),
            ChannelUrl::Folder(path) => write!(f, "file://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostName {
        "pi".parse().expect("host")
    }

    #[test]
    fn joins_the_files_of_a_channel() {
        let ChannelUrl::Http(base) = "https://deploy.example.org/v1/channel/"
            .parse()
            .expect("channel")
        else {
            panic!("an http channel");
        };
        assert_eq!(
            ChannelUrl::state_url(&base, &host(), None).to_string(),
            "https://deploy.example.org/v1/channel/hosts/pi.json"
        );
        assert_eq!(
            ChannelUrl::state_url(&base, &host(), Some((7, 55))).path(),
            "/v1/channel/hosts/pi.json?after=7&wait=55"
        );
        assert_eq!(
            ChannelUrl::reports_url(&base, &host()).to_string(),
            "https://deploy.example.org/v1/channel/reports/pi"
        );
        let ChannelUrl::Http(root) = "http://10.0.0.1:8080".parse().expect("channel") else {
            panic!("an http channel");
        };
        assert_eq!(
            ChannelUrl::state_url(&root, &host(), None).path(),
            "/hosts/pi.json"
        );
        let folder: ChannelUrl = "file:///srv/channel/".parse().expect("channel");
        assert_eq!(folder, ChannelUrl::Folder("/srv/channel".into()));
        assert_eq!(folder.to_string(), "file:///srv/channel");
        assert_eq!(
            ChannelUrl::state_file(std::path::Path::new("/srv/channel"), &host()),
            PathBuf::from("/srv/channel/hosts/pi.json")
        );
    }

    #[test]
    fn refuses_what_is_no_channel() {
        for bad in [
            "s3://bucket/prefix",
            "file://relative/x",
            "https://h/channel?x=1",
            "https://h/channel#top",
            "ftp://h/",
            "/srv/channel",
        ] {
            assert!(
                matches!(
                    bad.parse::<ChannelUrl>(),
                    Err(ChannelUrlError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            "https://alice:s3cret@h/channel".parse::<ChannelUrl>(),
            Err(ChannelUrlError::Credentials(
                "https://alice:***@h/channel".into()
            ))
        );
    }
}
