//! Sending hooks as each forge sends them: a plain HTTP/1.1 POST of the body's
//! exact bytes with the forge's headers, a new delivery id per delivery, and
//! the signature or token the forge adds. Headers are written in the case
//! the forges use; receivers must not care, and the tests check they don't.
//!
//! Headers, from the forges' documentation and sources:
//! - GitHub: `X-GitHub-Event`, `X-GitHub-Delivery` (a GUID),
//!   `X-GitHub-Hook-ID`, `X-GitHub-Hook-Installation-Target-Type` and `-ID`,
//!   `X-Hub-Signature` (`sha1=`), `X-Hub-Signature-256` (`sha256=`),
//!   `User-Agent: GitHub-Hookshot/<version>`
//!   (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers>).
//! - Gitea: `X-Gitea-`, `X-Gogs-` and `X-GitHub-` `Delivery`, `Event` and
//!   `Event-Type`; `X-Gitea-Signature` and `X-Gogs-Signature` (bare hex
//!   HMAC-SHA256), `X-Hub-Signature`, `X-Hub-Signature-256`; Go's default
//!   `User-Agent` (`services/webhook/deliver.go`). Forgejo adds the same
//!   set as `X-Forgejo-` first.
//! - GitLab: `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`),
//!   `X-Gitlab-Token` (the secret itself), `X-Gitlab-Instance`,
//!   `X-Gitlab-Webhook-UUID` (the hook's), `X-Gitlab-Event-UUID`,
//!   `Idempotency-Key` (kept on retries), `User-Agent: GitLab/<version>`
//!   (<https://docs.gitlab.com/user/project/integrations/webhooks/>).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::sign::{hmac_sha1_hex, hmac_sha256_hex};
use super::{ForgeKind, HookResponse, Signature};

/// How long a forge waits for the receiver (GitHub's documented limit is
/// 10 s; Gitea's default `DELIVER_TIMEOUT` is 5 s).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest receiver answer read.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// GitHub's hook id in the ping fixture.
const GITHUB_HOOK_ID: &str = "512030771";
/// GitHub's repository id in the fixtures.
const GITHUB_REPOSITORY_ID: &str = "801233517";
/// The GitLab hook's UUID.
const GITLAB_WEBHOOK_UUID: &str = "3f0c8e52-5b1d-4f7a-9c36-2e8a41d07b95";

/// What a forge writes on one delivery, before it is sent.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delivery_id: String,
}

/// The headers `kind` sends for `event` with `body`, under a new delivery id.
pub(super) fn request(
    kind: ForgeKind,
    hook: &HookHeaders<'_>,
    event: &str,
    body: &[u8],
) -> Request {
    let id = new_uuid();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: &str| headers.push((name.to_owned(), value.to_owned()));
    add("Content-Type", "application/json");
    let secret = match hook.signature {
        Signature::Correct => Some(hook.secret.to_owned()),
        Signature::Wrong => Some(format!("not-{}", hook.secret)),
        Signature::Missing => None,
    };
    match kind {
        ForgeKind::GitHub => {
            add("User-Agent", "GitHub-Hookshot/9f2c1e7");
            add("X-GitHub-Delivery", &id);
            add("X-GitHub-Event", event);
            add("X-GitHub-Hook-ID", GITHUB_HOOK_ID);
            add("X-GitHub-Hook-Installation-Target-ID", GITHUB_REPOSITORY_ID);
            add("X-GitHub-Hook-Installation-Target-Type", "repository");
            if let Some(secret) = &secret {
                let sha1 = hmac_sha1_hex(secret.as_bytes(), body);
                let sha256 = hmac_sha256_hex(secret.as_bytes(), body);
                add("X-Hub-Signature", &format!("sha1={sha1}"));
                add("X-Hub-Signature-256", &format!("sha256={sha256}"));
            }
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            add("User-Agent", "Go-http-client/1.1");
            let sha256 = secret
                .as_ref()
                .map(|secret| hmac_sha256_hex(secret.as_bytes(), body));
            let mut prefixes = vec!["Gitea", "Gogs"];
            if kind == ForgeKind::Forgejo {
                prefixes.insert(0, "Forgejo");
            }
            for prefix in prefixes {
                add(&format!("X-{prefix}-Delivery"), &id);
                add(&format!("X-{prefix}-Event"), event);
                add(&format!("X-{prefix}-Event-Type"), event);
                if let Some(signature) = &sha256 {
                    add(&format!("X-{prefix}-Signature"), signature);
                }
            }
            if let (Some(secret), Some(sha256)) = (&secret, &sha256) {
                let sha1 = hmac_sha1_hex(secret.as_bytes(), body);
                add("X-Hub-Signature", &format!("sha1={sha1}"));
                add("X-Hub-Signature-256", &format!("sha256={sha256}"));
            }
            add("X-GitHub-Delivery", &id);
            add("X-GitHub-Event", event);
            add("X-GitHub-Event-Type", event);
        }
        ForgeKind::GitLab => {
            add("User-Agent", "GitLab/17.9.1");
            add("Idempotency-Key", &id);
            add("X-Gitlab-Event", event);
            add("X-Gitlab-Webhook-UUID", GITLAB_WEBHOOK_UUID);
            add("X-Gitlab-Instance", hook.instance);
            add("X-Gitlab-Event-UUID", &new_uuid());
            if let Some(secret) = &secret {
                add("X-Gitlab-Token", secret);
            }
        }
    }
    Request {
        headers,
        body: body.to_vec(),
        delivery_id: id,
    }
}

/// What the headers depend on besides the event and body.
pub(super) struct HookHeaders<'a> {
    pub secret: &'a str,
    pub signature: Signature,
    /// The forge's own URL (GitLab's `X-Gitlab-Instance`).
    pub instance: &'a str,
}

/// Adds `extra` headers, each replacing any header of the same name.
pub(super) fn override_headers(headers: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    for (name, value) in extra {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
}

/// POSTs `body` with `headers` to `url` (`http://host:port/path`) and reads
/// the answer.
pub(super) fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<HookResponse> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, DELIVERY_TIMEOUT)
        .with_context(|| format!("connecting to {url}"))?;
    stream.set_read_timeout(Some(DELIVERY_TIMEOUT))?;
    stream.set_write_timeout(Some(DELIVERY_TIMEOUT))?;
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    // A service may answer before the body is sent (a refusal by the
    // headers alone) and close the connection: the answer is read all the
    // same.
    let sent = stream.write_all(body).and_then(|()| stream.flush());
    read_response(stream).with_context(|| match sent {
        Ok(()) => format!("reading the answer of {url}"),
        Err(error) => {
            format!("reading the answer of {url}, which stopped taking the body ({error})")
        }
    })
}

fn read_response(stream: TcpStream) -> Result<HookResponse> {
    let mut reader = BufReader::new(stream.take(MAX_RESPONSE_BYTES));
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let body = if chunked {
        super::server::read_chunked(&mut reader, MAX_RESPONSE_BYTES as usize)?
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    if status < 100 {
        bail!("bad status {status}");
    }
    Ok(HookResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A random (version 4) UUID, as the forges' delivery ids are.
pub(super) fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Unique enough for a test run without /dev/urandom.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn signatures_are_computed_left_wrong_or_left_out() {
        let body = b"{}";
        let correct = hmac_sha256_hex(b"s3cret", body);
        let hook = |signature| HookHeaders {
            secret: "s3cret",
            signature,
            instance: "http://127.0.0.1:1",
        };
        let github = request(ForgeKind::GitHub, &hook(Signature::Correct), "push", body);
        assert_eq!(
            header(&github, "X-Hub-Signature-256"),
            Some(format!("sha256={correct}").as_str())
        );
        let forgejo = request(ForgeKind::Forgejo, &hook(Signature::Wrong), "push", body);
        let wrong = header(&forgejo, "X-Forgejo-Signature").expect("signed");
        assert_eq!(wrong.len(), 64);
        assert_ne!(wrong, correct);
        assert_eq!(header(&forgejo, "X-Gitea-Signature"), Some(wrong));
        let gitea = request(ForgeKind::Gitea, &hook(Signature::Missing), "push", body);
        assert_eq!(header(&gitea, "X-Gitea-Signature"), None);
        assert_eq!(header(&gitea, "X-Forgejo-Event"), None);
        assert_eq!(header(&gitea, "X-GitHub-Event"), Some("push"));
        let gitlab = request(
            ForgeKind::GitLab,
            &hook(Signature::Correct),
            "Push Hook",
            body,
        );
        assert_eq!(header(&gitlab, "X-Gitlab-Token"), Some("s3cret"));
        assert_eq!(
            header(&gitlab, "Idempotency-Key"),
            Some(gitlab.delivery_id.as_str())
        );
    }
}
