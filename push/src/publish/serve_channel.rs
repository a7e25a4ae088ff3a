//! A channel that is push serve's channel API (docs/src/design/channels.md,
//! "push serve's channel API"): `GET CHANNEL/hosts/<host>.json` answers
//! the state held (`404` when none), `PUT` of the same path publishes an
//! envelope and answers `200 {"sequence": N}`, or `409 replayed` when push
//! serve already holds a state with that sequence or a higher one (someone
//! published meanwhile: [`Written::Replayed`], and push publish reads again
//! and retries once). push serve checks the signature itself: push
//! publish sends no credentials.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_protocol::{ErrorBody, ErrorCode, HostName, MAX_ENVELOPE_BYTES};

use super::channel::{state_key, Written};
use crate::tls::{read_bounded, Clients, Trust};

/// How long one request to push serve may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer to a `PUT` read (`{"sequence": N}`, or an error).
const MAX_ANSWER_BYTES: usize = 16 << 10;

/// push serve's channel at a base URL (`https://SERVE/v1/channel`).
pub struct ServeChannel {
    base: String,
    http: reqwest::Client,
}

impl ServeChannel {
    /// The channel at `url`, reached trusting `trust` (the system's roots
    /// and push.toml's `ca_file`).
    pub fn open(url: &str, trust: &Trust) -> Result<ServeChannel> {
        let http = Clients::new(|builder| {
            builder
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
        })
        .get(trust, url.starts_with("https://"))
        .context("making the HTTP client")?;
        Ok(ServeChannel {
            base: url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, host: &HostName) -> String {
        format!("{}/{}", self.base, state_key(host))
    }

    /// The state push serve holds for `host`; `None` when it holds none.
    pub async fn read(&self, host: &HostName) -> Result<Option<Vec<u8>>> {
        let url = self.url(host);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("GET {url}: {}", crate::tls::problem(&error)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = read_bounded(response, MAX_ENVELOPE_BYTES)
            .await
            .with_context(|| format!("GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url}: {}", refusal(status, &body));
        }
        Ok(Some(body))
    }

    /// Publishes `envelope` as `host`'s state.
    pub async fn write(&self, host: &HostName, envelope: Vec<u8>) -> Result<Written> {
        let url = self.url(host);
        let response = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("PUT {url}: {}", crate::tls::problem(&error)))?;
        let status = response.status();
        let body = read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .with_context(|| format!("PUT {url}"))?;
        if status.is_success() {
            return Ok(Written::Done);
        }
        if status == reqwest::StatusCode::CONFLICT {
            if let Ok(error) = serde_json::from_slice::<ErrorBody>(&body) {
                if error.error == ErrorCode::Replayed {
                    return Ok(Written::Replayed(one_line(&error.message)));
                }
            }
        }
        bail!("PUT {url}: {}", refusal(status, &body));
    }
}

/// push serve's refusal in one line: its error code and message, or the
/// HTTP status when the body is no error of deployd's.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => format!("{status}: {}: {}", error.error, one_line(&error.message)),
        Err(_) => format!("{status}"),
    }
}

fn one_line(text: &str) -> String {
    let line = crate::inventory::one_line(text);
    line.chars().take(400).collect()
}
