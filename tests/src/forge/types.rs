//! The stand-in's public vocabulary: the forge played, how to start it, a
//! ref update to announce, hand-made hooks, and the records of what it sent
//! and received.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};

/// Which forge the stand-in plays (the service config's `forge.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    /// GitHub (`github`).
    GitHub,
    /// Gitea (`gitea`).
    Gitea,
    /// Forgejo (`forgejo`).
    Forgejo,
    /// GitLab (`gitlab`).
    GitLab,
}

impl ForgeKind {
    /// Every kind, for tests that cover them all.
    pub const ALL: [ForgeKind; 4] = [
        ForgeKind::GitHub,
        ForgeKind::Gitea,
        ForgeKind::Forgejo,
        ForgeKind::GitLab,
    ];

    /// The name in the service config.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Forgejo => "forgejo",
            ForgeKind::GitLab => "gitlab",
        }
    }

    /// The header naming a hook's event (`X-Forgejo-Event` for Forgejo,
    /// though it sends the Gitea and GitHub names too).
    pub fn event_header(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "X-GitHub-Event",
            ForgeKind::Gitea => "X-Gitea-Event",
            ForgeKind::Forgejo => "X-Forgejo-Event",
            ForgeKind::GitLab => "X-Gitlab-Event",
        }
    }

    /// The header carrying a delivery's id (GitLab: `Idempotency-Key`, the
    /// same on a retry).
    pub fn delivery_header(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "X-GitHub-Delivery",
            ForgeKind::Gitea => "X-Gitea-Delivery",
            ForgeKind::Forgejo => "X-Forgejo-Delivery",
            ForgeKind::GitLab => "Idempotency-Key",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ForgeKind {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<ForgeKind> {
        ForgeKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .with_context(|| format!("unknown forge {name:?} (github, gitea, forgejo or gitlab)"))
    }
}

/// How to start a stand-in.
#[derive(Debug, Clone)]
pub struct ForgeOptions {
    /// The forge played.
    pub kind: ForgeKind,
    /// The git repository served (bare, or a work tree).
    pub repository: PathBuf,
    /// Its path on the forge, `owner/name` (GitLab: the project's path).
    pub owner_repo: String,
    /// Where hooks are sent, e.g. `http://127.0.0.1:9798/v1/hooks/forgejo`.
    pub webhook_url: String,
    /// The hook's secret (GitLab: its token).
    pub secret: String,
    /// The API token the status calls must carry.
    pub token: String,
    /// Where to listen, e.g. `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Serve HTTPS too, with this certificate (for the address of
    /// `listen`): then git and the status API are at
    /// [`super::ForgeStandIn::https_url`], and the plain listener serves git
    /// only, so the API is HTTPS only, as on every real forge.
    pub tls: Option<crate::tls::ServerIdentity>,
}

/// A ref update to announce: what a push did to one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// The full ref name, `refs/heads/main` or `refs/tags/v1`.
    pub reference: String,
    /// The object the ref named before (all zeros: created).
    pub before: String,
    /// The object it names now (all zeros, of the repository's hash
    /// length: deleted).
    pub after: String,
}

/// The receiver's answer to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// How a hand-made hook is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// As the forge signs it, with the right secret (GitLab: the right token).
    Correct,
    /// In the forge's format, with another secret.
    Wrong,
    /// Without the signature (or token) headers.
    Missing,
}

/// A hand-made hook, for the negative tests.
#[derive(Debug, Clone)]
pub struct RawHook {
    /// The event header's value (`push`, `Push Hook`, `issues`, ...).
    pub event: String,
    /// The exact body sent.
    pub body: Vec<u8>,
    /// How it is signed.
    pub signature: Signature,
    /// Headers added, each replacing the forge's header of the same name.
    pub extra_headers: Vec<(String, String)>,
}

/// One commit status call the API received.
#[derive(Debug, Clone)]
pub struct RecordedStatus {
    /// The sha in the path.
    pub sha: String,
    /// `context` (GitLab: `name`, or `context`), `default` when absent.
    pub context: String,
    /// The state, as sent.
    pub state: String,
    /// The description, if sent.
    pub description: Option<String>,
    /// The target URL, if sent.
    pub target_url: Option<String>,
    /// Whether the call carried the right token.
    pub token_valid: bool,
    /// The HTTP status the stand-in answered.
    pub answer: u16,
    /// When the call arrived.
    pub at: Instant,
}

/// One hook the stand-in sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event header's value.
    pub event: String,
    /// The delivery id (GitLab: the `Idempotency-Key`).
    pub delivery_id: String,
    /// The ref it announced, for push and delete hooks.
    pub reference: Option<String>,
    /// The new object it announced, for push and delete hooks.
    pub after: Option<String>,
    /// The receiver's HTTP status; `None` if it could not be reached.
    pub status: Option<u16>,
    /// Every header sent, in order.
    pub headers: Vec<(String, String)>,
    /// The exact body sent.
    pub body: Vec<u8>,
    /// Whether this was a redelivery of an earlier delivery.
    pub redelivery: bool,
}
