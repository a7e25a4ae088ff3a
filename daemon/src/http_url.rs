//! `HttpUrl`: an `http://` or `https://host[:port]/path` URL for a health
//! check, checked when the config is read. A leaf type: the config parses
//! it, the health check uses it, neither depends on the other.

use std::fmt;
use std::str::FromStr;

use deployd_command::redact::{mask_credentials, url_credentials};

/// An HTTP(S) URL: scheme, host, port (80 or 443 when not given) and path
/// (with query). No user or password: credentials never go in a URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl {
    text: String,
    https: bool,
    host: String,
    port: u16,
    path: String,
}

/// A text that is not an `http(s)://host[:port]/path` URL without credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    /// Not such a URL at all.
    #[error("{0:?} is not an http(s)://host[:port]/path URL")]
    Malformed(String),
    /// A URL with a user or password (shown masked).
    #[error("{0:?} has a user or password in it; a health check sends no credentials, and logs, errors and statuses show its URL: check a URL that needs none, or use a [[health.commands]] entry that reads its credentials from a file")]
    Credentials(String),
}

impl HttpUrl {
    /// Whether it is an `https://` URL.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The `Host` header's value: the host (an IPv6 address in brackets),
    /// and the port unless it is the scheme's own.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The host (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl FromStr for HttpUrl {
    type Err = HttpUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if url_credentials(text).is_some() {
            return Err(HttpUrlError::Credentials(
                mask_credentials(text).into_owned(),
            ));
        }
        let invalid = || HttpUrlError::Malformed(text.to_owned());
        let (https, rest) = match text.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix("http://").ok_or_else(invalid)?),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse().map_err(|_| invalid())?)
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(invalid());
        }
        Ok(HttpUrl {
            text: text.to_owned(),
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = HttpUrlError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Option<(String, u16, String)> {
        let url: HttpUrl = text.parse().ok()?;
        Some((url.host().into(), url.port(), url.path().into()))
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            parts("http://127.0.0.1:8080/health"),
            Some(("127.0.0.1".into(), 8080, "/health".into()))
        );
        assert_eq!(
            parts("http://localhost"),
            Some(("localhost".into(), 80, "/".into()))
        );
        assert_eq!(
            parts("http://[::1]:81/x?y"),
            Some(("::1".into(), 81, "/x?y".into()))
        );
        assert_eq!(
            parts("https://example.org/up"),
            Some(("example.org".into(), 443, "/up".into()))
        );
        assert_eq!(
            parts("https://[::1]:8443"),
            Some(("::1".into(), 8443, "/".into()))
        );
        for (text, authority) in [
            ("http://h/", "h"),
            ("http://h:81/", "h:81"),
            ("https://h:443/", "h"),
            ("https://h:80/", "h:80"),
            ("https://[::1]:8443/", "[::1]:8443"),
        ] {
            let url: HttpUrl = text.parse().expect("url");
            assert_eq!(url.authority(), authority, "{text}");
            assert_eq!(url.is_https(), text.starts_with("https:"), "{text}");
        }
        for bad in [
            "ftp://example.org/",
            "https:///x",
            "https://user:password@h/",
            "http:///x",
            "http://h/a b",
            "http://h:port/",
            "http://:80/",
            "http://user@h/",
        ] {
            assert_eq!(parts(bad), None, "{bad}");
        }
        assert_eq!(
            "http://monitor:s3cret@h/".parse::<HttpUrl>(),
            Err(HttpUrlError::Credentials("http://monitor:***@h/".into()))
        );
        let url: HttpUrl = "http://h:81/x".parse().expect("url");
        assert_eq!(url.to_string(), "http://h:81/x");
    }
}
