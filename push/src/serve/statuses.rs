//! Commit statuses on the forge, context `deployd/<host>`: posted by one
//! background task in the order they were made, each retried with backoff
//! while the forge fails (5xx, 429, no answer), so a forge that is down
//! never delays or fails a rollout; given up after a while, and logged.
//!
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization:
//!   Bearer`, `description` at most 140 characters.
//! - Gitea, Forgejo: `POST {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}`,
//!   `Authorization: token`.
//! - GitLab: `POST {api}/api/v4/projects/{id}/statuses/{sha}`, `PRIVATE-TOKEN`,
//!   `name` for the context, states `pending|running|success|failed|canceled`,
//!   `description` at most 255; the same state twice answers 400, taken as done.
//!
//! Over HTTPS (as every forge serves its API), trusting the system's roots
//! and `ca_file`. A certificate that does not verify is not retried: no
//! retry changes it, and the statuses after it would wait in vain. It is
//! logged, one line naming the forge's host and the check that failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::{ForgeKind, ForgeSection};
use crate::tls::{CaFile, TlsError, Trust};

/// How long one status is retried before it is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a host stands, as a commit status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// Its system is being built.
    Building,
    /// Its deploy was sent and runs.
    Deploying,
    /// It pulls: its deploy was published to its channel, its report is
    /// awaited.
    Published,
    /// It deployed.
    Success,
    /// Its deploy failed or rolled back.
    Failure,
    /// Nothing was deployed: build failed, unreachable, refused.
    Error,
    /// A newer push was deployed instead.
    Superseded,
}

impl StatusState {
    /// The state GitHub, Gitea and Forgejo know.
    fn common(self) -> &'static str {
        match self {
            StatusState::Building | StatusState::Deploying | StatusState::Published => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error | StatusState::Superseded => "error",
        }
    }

    /// GitLab's.
    fn gitlab(self) -> &'static str {
        match self {
            StatusState::Building | StatusState::Published => "pending",
            StatusState::Deploying => "running",
            StatusState::Success => "success",
            StatusState::Failure | StatusState::Error => "failed",
            StatusState::Superseded => "canceled",
        }
    }
}

/// One status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    /// The commit.
    pub sha: String,
    /// The host (the context is `deployd/<host>`).
    pub host: String,
    /// Its state.
    pub state: StatusState,
    /// One line for people.
    pub description: String,
    /// The host's deploy record, when there is one.
    pub target_url: Option<String>,
}

/// Hands statuses to the background task; never waits for the forge.
#[derive(Clone)]
pub struct StatusPoster {
    sender: Option<mpsc::UnboundedSender<CommitStatus>>,
}

impl StatusPoster {
    /// Starts the task that posts to `forge` with `token`, trusting the
    /// system's roots and `ca_file`; without a token, statuses are only
    /// logged.
    pub fn start(
        forge: &ForgeSection,
        token: Option<String>,
        ca_file: Option<&Arc<CaFile>>,
    ) -> Result<StatusPoster, TlsError> {
        let Some(token) = token else {
            return Ok(StatusPoster { sender: None });
        };
        let http = Trust::with(ca_file)
            .builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect could carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("deployd-push/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TlsError::Client)?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<CommitStatus>();
        let forge = forge.clone();
        tokio::spawn(async move {
            while let Some(status) = receiver.recv().await {
                post_with_retries(&http, &forge, &token, &status).await;
            }
        });
        Ok(StatusPoster {
            sender: Some(sender),
        })
    }

    /// Queues `status` for the forge.
    pub fn post(&self, status: CommitStatus) {
        log::info!(
            rev = status.sha.as_str(),
            host = status.host.as_str();
            "status deployd/{} {:?} on {}: {}",
            status.host,
            status.state,
            short(&status.sha),
            status.description
        );
        if let Some(sender) = &self.sender {
            let _ = sender.send(status);
        }
    }
}

/// The first 12 characters of a commit id.
pub fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

async fn post_with_retries(
    http: &reqwest::Client,
    forge: &ForgeSection,
    token: &str,
    status: &CommitStatus,
) {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        match post(http, forge, token, status).await {
            Ok(()) => return,
            Err(Failure::Final(why)) => {
                log::error!(
                    "the forge refused status deployd/{} on {}: {why}",
                    status.host,
                    short(&status.sha)
                );
                return;
            }
            Err(Failure::Untrusted(why)) => {
                log::error!(
                    "cannot post status deployd/{} on {}: {why}",
                    status.host,
                    short(&status.sha)
                );
                return;
            }
            Err(Failure::Retry(why)) if started.elapsed() + pause < GIVE_UP_AFTER => {
                log::warn!(
                    "the forge did not take status deployd/{} ({why}); again in {pause:?}",
                    status.host
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
            }
            Err(Failure::Retry(why)) => {
                log::error!(
                    "gave up posting status deployd/{} on {}: {why}",
                    status.host,
                    short(&status.sha)
                );
                return;
            }
        }
    }
}

enum Failure {
    /// Worth another try.
    Retry(String),
    /// Will never work.
    Final(String),
    /// The forge's certificate does not verify: push refuses to talk to it.
    Untrusted(String),
}

/// The request for `status`: URL, headers and JSON body.
pub fn request(
    forge: &ForgeSection,
    token: &str,
    status: &CommitStatus,
) -> (String, Vec<(&'static str, String)>, serde_json::Value) {
    let api = forge.api_url.trim_end_matches('/');
    let context = format!("deployd/{}", status.host);
    match forge.kind {
        ForgeKind::Github | ForgeKind::Gitea | ForgeKind::Forgejo => {
            let (url, authorization, limit) = match forge.kind {
                ForgeKind::Github => (
                    format!("{api}/repos/{}/statuses/{}", forge.repository, status.sha),
                    format!("Bearer {token}"),
                    140,
                ),
                _ => (
                    format!(
                        "{api}/api/v1/repos/{}/statuses/{}",
                        forge.repository, status.sha
                    ),
                    format!("token {token}"),
                    255,
                ),
            };
            let mut body = serde_json::json!({
                "state": status.state.common(),
                "description": cut(&status.description, limit),
                "context": context,
            });
            if let Some(target) = &status.target_url {
                body["target_url"] = target.clone().into();
            }
            let mut headers = vec![("authorization", authorization)];
            if forge.kind == ForgeKind::Github {
                headers.push(("accept", "application/vnd.github+json".into()));
            }
            (url, headers, body)
        }
        ForgeKind::Gitlab => {
            let project: String = percent_encoding::utf8_percent_encode(
                &forge.repository,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            let url = format!("{api}/api/v4/projects/{project}/statuses/{}", status.sha);
            let mut body = serde_json::json!({
                "state": status.state.gitlab(),
                "description": cut(&status.description, 255),
                "name": context,
            });
            if let Some(target) = &status.target_url {
                body["target_url"] = target.clone().into();
            }
            (url, vec![("private-token", token.to_owned())], body)
        }
    }
}

async fn post(
    http: &reqwest::Client,
    forge: &ForgeSection,
    token: &str,
    status: &CommitStatus,
) -> Result<(), Failure> {
    let (url, headers, body) = request(forge, token, status);
    let mut request = http.post(&url).json(&body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|error| {
        let why = crate::tls::describe(&error);
        if crate::tls::certificate_refused(&error) {
            Failure::Untrusted(why)
        } else {
            Failure::Retry(why)
        }
    })?;
    let code = response.status();
    if code.is_success() {
        return Ok(());
    }
    let text: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    // GitLab answers 400 to a state it already has for this name.
    if forge.kind == ForgeKind::Gitlab && code.as_u16() == 400 && text.contains("transition") {
        return Ok(());
    }
    match code.as_u16() {
        429 | 500..=599 => Err(Failure::Retry(format!("{code}"))),
        _ => Err(Failure::Final(format!("{code}: {text}"))),
    }
}

/// `text` in at most `limit` characters (an ellipsis marks a cut).
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(kind: ForgeKind, repository: &str) -> ForgeSection {
        ForgeSection {
            kind,
            api_url: "https://git.example.org/".into(),
            repository: repository.into(),
            secret_file: "/s".into(),
            token_file: None,
        }
    }

    fn status(state: StatusState) -> CommitStatus {
        CommitStatus {
            sha: "a".repeat(40),
            host: "sambirano".into(),
            state,
            description: "x".repeat(300),
            target_url: Some("http://sambirano:9797/v1/deploys/d-1".into()),
        }
    }

    #[test]
    fn each_forge_gets_its_own_request() {
        let sha = "a".repeat(40);
        let (url, headers, body) = request(
            &forge(ForgeKind::Github, "ops/fleet"),
            "t",
            &status(StatusState::Deploying),
        );
        assert_eq!(
            url,
            format!("https://git.example.org/repos/ops/fleet/statuses/{sha}")
        );
        assert_eq!(headers[0], ("authorization", "Bearer t".to_owned()));
        assert_eq!(body["state"], "pending");
        assert_eq!(body["context"], "deployd/sambirano");
        assert_eq!(
            body["description"].as_str().expect("text").chars().count(),
            140
        );
        assert_eq!(body["target_url"], "http://sambirano:9797/v1/deploys/d-1");

        let (url, headers, body) = request(
            &forge(ForgeKind::Forgejo, "ops/fleet"),
            "t",
            &status(StatusState::Failure),
        );
        assert_eq!(
            url,
            format!("https://git.example.org/api/v1/repos/ops/fleet/statuses/{sha}")
        );
        assert_eq!(headers[0], ("authorization", "token t".to_owned()));
        assert_eq!(body["state"], "failure");

        let (url, headers, body) = request(
            &forge(ForgeKind::Gitlab, "ops/fleet"),
            "t",
            &status(StatusState::Deploying),
        );
        assert_eq!(
            url,
            format!("https://git.example.org/api/v4/projects/ops%2Ffleet/statuses/{sha}")
        );
        assert_eq!(headers[0], ("private-token", "t".to_owned()));
        assert_eq!(body["state"], "running");
        assert_eq!(body["name"], "deployd/sambirano");
        assert_eq!(
            body["description"].as_str().expect("text").chars().count(),
            255
        );
        for (state, gitlab) in [
            (StatusState::Building, "pending"),
            (StatusState::Success, "success"),
            (StatusState::Error, "failed"),
            (StatusState::Superseded, "canceled"),
        ] {
            assert_eq!(state.gitlab(), gitlab);
        }
        assert_eq!(StatusState::Superseded.common(), "error");
    }
}
