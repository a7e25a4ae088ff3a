//! Forge webhooks: before the body is read, the signature header checked
//! for presence and form (GitLab's token checked whole: it does not depend
//! on the body); then the signature checked in constant time over the exact
//! bytes received, before anything is parsed; then what the hook asks for. A hook only says "look": it names a branch that moved,
//! and the service fetches the branch itself. Everything but a push to a
//! followed branch is ignored: pings, test deliveries (GitHub's ping),
//! other events, tags, deletions, other branches.
//!
//! The forges, as their documentation describes them:
//! - GitHub: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256:
//!   sha256=<hex HMAC-SHA256(secret, body)>`; a deletion is a `push` with
//!   `deleted: true` and an all-zero `after`.
//! - Gitea and Forgejo: `X-Gitea-Event`/`X-Forgejo-Event`,
//!   `X-Gitea-Delivery`/`X-Forgejo-Delivery`, `X-Gitea-Signature`/
//!   `X-Forgejo-Signature: <hex>`, over the JSON payload (JSON bodies only);
//!   a branch deletion is a `delete` event, a tag deletion a push with an
//!   all-zero `after`.
//! - GitLab: `X-Gitlab-Event: Push Hook` (`Tag Push Hook` for tags),
//!   `X-Gitlab-Token: <secret>`, `Idempotency-Key` kept across retries.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::ForgeKind;

/// What a verified hook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A branch moved: fetch it and deploy its tip.
    Push {
        /// The branch (without `refs/heads/`).
        branch: String,
        /// The commit the payload says the branch is at now (a hint: the
        /// fetched tip is what gets deployed).
        after: String,
        /// The forge's delivery id.
        delivery: String,
    },
    /// Nothing to do, and why.
    Ignored(&'static str),
}

/// Why a hook is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// No signature or token.
    #[error("the hook carries no {0}")]
    Unsigned(&'static str),
    /// A signature that is not a hex HMAC-SHA256 (64 hex digits).
    #[error("the hook's {0} is not a hex HMAC-SHA256")]
    UnreadableSignature(&'static str),
    /// A signature or token that does not match.
    #[error("the hook's {0} does not match")]
    BadSignature(&'static str),
    /// Signed, but not a payload this service reads.
    #[error("{0}")]
    Malformed(String),
}

/// What can be checked before the body is read: the signature header is
/// there and well formed (GitHub, Gitea, Forgejo), or the token is the
/// secret (GitLab, compared in constant time). A hook that fails here is
/// refused without a byte of its body read.
pub fn check_before_body(
    kind: ForgeKind,
    headers: &HeaderMap,
    secret: &[u8],
) -> Result<(), HookError> {
    match kind {
        ForgeKind::Gitlab => check_token(headers, secret),
        _ => signature(kind, headers).and_then(|(what, hex)| match is_hmac_sha256_hex(hex) {
            true => Ok(()),
            false => Err(HookError::UnreadableSignature(what)),
        }),
    }
}

/// Whether `hex` has the form of a hex HMAC-SHA256: 64 hex digits.
fn is_hmac_sha256_hex(hex: &str) -> bool {
    let hex = hex.trim();
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The signature header the hook of `kind` carries: its name and its hex
/// (GitHub's without `sha256=`). Not for GitLab, which sends a token.
fn signature(kind: ForgeKind, headers: &HeaderMap) -> Result<(&'static str, &str), HookError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match kind {
        // GitLab signs nothing (its token is checked whole, by `check_token`).
        ForgeKind::Gitlab => Err(HookError::Unsigned("signature")),
        ForgeKind::Github => {
            let what = "X-Hub-Signature-256";
            let signature = header("x-hub-signature-256").ok_or(HookError::Unsigned(what))?;
            let hex = signature
                .strip_prefix("sha256=")
                .ok_or(HookError::UnreadableSignature(what))?;
            Ok((what, hex))
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            // Forgejo sends both; Gitea only its own.
            match (header("x-forgejo-signature"), header("x-gitea-signature")) {
                (Some(signature), _) if kind == ForgeKind::Forgejo => {
                    Ok(("X-Forgejo-Signature", signature))
                }
                (_, Some(signature)) => Ok(("X-Gitea-Signature", signature)),
                _ => Err(HookError::Unsigned("signature")),
            }
        }
    }
}

/// Whether GitLab's token is the secret.
fn check_token(headers: &HeaderMap, secret: &[u8]) -> Result<(), HookError> {
    let what = "X-Gitlab-Token";
    let token = headers
        .get("x-gitlab-token")
        .ok_or(HookError::Unsigned(what))?;
    // Compared as digests: equal lengths, so the time taken says
    // nothing about the secret's length either.
    let (given, expected) = (Sha256::digest(token.as_bytes()), Sha256::digest(secret));
    match bool::from(given.ct_eq(&expected)) {
        true => Ok(()),
        false => Err(HookError::BadSignature(what)),
    }
}

/// Checks the hook's signature (GitLab: token) over `body`, as received.
pub fn verify(
    kind: ForgeKind,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), HookError> {
    match kind {
        ForgeKind::Gitlab => check_token(headers, secret),
        _ => {
            let (what, hex) = signature(kind, headers)?;
            check_hmac(secret, body, hex).map_err(|()| HookError::BadSignature(what))
        }
    }
}

/// Whether `hex` is HMAC-SHA256(secret, body), compared in constant time.
fn check_hmac(secret: &[u8], body: &[u8], hex: &str) -> Result<(), ()> {
    let expected = hex::decode(hex.trim()).map_err(|_| ())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| ())?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| ())
}

/// The part of a push payload this service reads (all four forges name
/// these fields alike).
#[derive(Debug, serde::Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    before: String,
    after: String,
    #[serde(default)]
    deleted: bool,
}

/// What a verified hook asks for. `is_followed` says whether a branch is
/// followed.
pub fn classify(
    kind: ForgeKind,
    headers: &HeaderMap,
    body: &[u8],
    is_followed: impl Fn(&str) -> bool,
) -> Result<Hook, HookError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let (event, delivery) = match kind {
        ForgeKind::Github => (header("x-github-event"), header("x-github-delivery")),
        ForgeKind::Gitea => (header("x-gitea-event"), header("x-gitea-delivery")),
        ForgeKind::Forgejo => match header("x-forgejo-event") {
            "" => (header("x-gitea-event"), header("x-gitea-delivery")),
            event => (event, header("x-forgejo-delivery")),
        },
        ForgeKind::Gitlab => {
            let key = match header("idempotency-key") {
                "" => header("x-gitlab-event-uuid"),
                key => key,
            };
            (header("x-gitlab-event"), key)
        }
    };
    let is_push = match kind {
        ForgeKind::Gitlab => event == "Push Hook",
        _ => event == "push",
    };
    if !is_push {
        return Ok(Hook::Ignored(match event {
            "ping" => "a ping",
            "Tag Push Hook" => "a tag push",
            "delete" => "a deletion",
            _ => "not a push event",
        }));
    }
    let content_type = header("content-type");
    if !content_type.is_empty() && !content_type.starts_with("application/json") {
        return Err(HookError::Malformed(format!(
            "the hook's body is {content_type}; configure the hook to send JSON"
        )));
    }
    let payload: PushPayload = serde_json::from_slice(body)
        .map_err(|error| HookError::Malformed(format!("not a push payload: {error}")))?;
    if payload.deleted || is_zero_id(&payload.after) {
        return Ok(Hook::Ignored("a deletion"));
    }
    // Gitea's and Forgejo's "Test Delivery": the branch did not move.
    if payload.before == payload.after {
        return Ok(Hook::Ignored("a test delivery"));
    }
    let Some(branch) = payload.reference.strip_prefix("refs/heads/") else {
        return Ok(Hook::Ignored(
            if payload.reference.starts_with("refs/tags/") {
                "a tag push"
            } else {
                "not a branch"
            },
        ));
    };
    if !is_followed(branch) {
        return Ok(Hook::Ignored("a branch that is not followed"));
    }
    if !is_commit_id(&payload.after) {
        return Err(HookError::Malformed("the push names no commit".into()));
    }
    Ok(Hook::Push {
        branch: branch.to_owned(),
        after: payload.after,
        delivery: delivery.chars().take(128).collect(),
    })
}

/// All zeros, of any hash length (SHA-1's 40, SHA-256's 64).
fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// A full SHA-1 or SHA-256 commit id.
fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn github_documented_test_vector() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let signed = headers(&[("x-hub-signature-256", signature)]);
        assert_eq!(verify(ForgeKind::Github, &signed, body, secret), Ok(()));
        assert_eq!(
            verify(ForgeKind::Github, &signed, b"Hello, World?", secret),
            Err(HookError::BadSignature("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(ForgeKind::Github, &HeaderMap::new(), body, secret),
            Err(HookError::Unsigned("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn gitea_forgejo_and_gitlab_signatures() {
        let (secret, body) = (
            b"s3cret".as_slice(),
            b"{\"ref\":\"refs/heads/main\"}".as_slice(),
        );
        let good = hmac_hex(secret, body);
        for kind in [ForgeKind::Gitea, ForgeKind::Forgejo] {
            let gitea = headers(&[("x-gitea-signature", &good)]);
            assert_eq!(verify(kind, &gitea, body, secret), Ok(()), "{kind:?}");
            let wrong = headers(&[("x-gitea-signature", &hmac_hex(b"other", body))]);
            assert!(verify(kind, &wrong, body, secret).is_err());
        }
        // Forgejo's own header wins when both are sent.
        let both = headers(&[("x-forgejo-signature", "00"), ("x-gitea-signature", &good)]);
        assert!(verify(ForgeKind::Forgejo, &both, body, secret).is_err());
        let token = headers(&[("x-gitlab-token", "s3cret")]);
        assert_eq!(verify(ForgeKind::Gitlab, &token, body, secret), Ok(()));
        let wrong = headers(&[("x-gitlab-token", "s3cret ")]);
        assert!(verify(ForgeKind::Gitlab, &wrong, body, secret).is_err());
        assert!(verify(ForgeKind::Gitlab, &HeaderMap::new(), body, secret).is_err());
    }

    #[test]
    fn what_a_hook_asks_for() {
        let main = |branch: &str| branch == "main";
        let sha = "b".repeat(40);
        let push = |reference: &str, after: &str| {
            format!(
                "{{\"ref\":\"{reference}\",\"before\":\"{}\",\"after\":\"{after}\"}}",
                "a".repeat(40)
            )
        };
        let github = |event: &str| {
            headers(&[
                ("x-github-event", event),
                ("x-github-delivery", "d-1"),
                ("content-type", "application/json"),
            ])
        };
        assert_eq!(
            classify(
                ForgeKind::Github,
                &github("push"),
                push("refs/heads/main", &sha).as_bytes(),
                main
            ),
            Ok(Hook::Push {
                branch: "main".into(),
                after: sha.clone(),
                delivery: "d-1".into()
            })
        );
        for (reference, after, why) in [
            (
                "refs/heads/dev",
                sha.as_str(),
                "a branch that is not followed",
            ),
            ("refs/tags/v1", sha.as_str(), "a tag push"),
            ("refs/heads/main", &"0".repeat(40), "a deletion"),
            ("refs/heads/main", &"0".repeat(64), "a deletion"),
        ] {
            assert_eq!(
                classify(
                    ForgeKind::Github,
                    &github("push"),
                    push(reference, after).as_bytes(),
                    main
                ),
                Ok(Hook::Ignored(why))
            );
        }
        assert_eq!(
            classify(ForgeKind::Github, &github("ping"), b"{}", main),
            Ok(Hook::Ignored("a ping"))
        );
        let test_delivery =
            format!("{{\"ref\":\"refs/heads/main\",\"before\":\"{sha}\",\"after\":\"{sha}\"}}");
        let gitea_push = headers(&[("x-gitea-event", "push")]);
        assert_eq!(
            classify(
                ForgeKind::Gitea,
                &gitea_push,
                test_delivery.as_bytes(),
                main
            ),
            Ok(Hook::Ignored("a test delivery"))
        );
        assert_eq!(
            classify(ForgeKind::Github, &github("issues"), b"{}", main),
            Ok(Hook::Ignored("not a push event"))
        );
        let gitea_delete = headers(&[("x-gitea-event", "delete")]);
        assert_eq!(
            classify(ForgeKind::Gitea, &gitea_delete, b"{}", main),
            Ok(Hook::Ignored("a deletion"))
        );
        let gitlab_tag = headers(&[("x-gitlab-event", "Tag Push Hook")]);
        assert_eq!(
            classify(ForgeKind::Gitlab, &gitlab_tag, b"{}", main),
            Ok(Hook::Ignored("a tag push"))
        );
        let gitlab = headers(&[("x-gitlab-event", "Push Hook"), ("idempotency-key", "k-1")]);
        assert!(matches!(
            classify(ForgeKind::Gitlab, &gitlab, push("refs/heads/main", &sha).as_bytes(), main),
            Ok(Hook::Push { delivery, .. }) if delivery == "k-1"
        ));
        let form = headers(&[
            ("x-gitea-event", "push"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert!(matches!(
            classify(ForgeKind::Gitea, &form, b"payload=x", main),
            Err(HookError::Malformed(_))
        ));
        assert!(classify(ForgeKind::Github, &github("push"), b"not json", main).is_err());
        assert!(classify(
            ForgeKind::Github,
            &github("push"),
            push("refs/heads/main", "xyz").as_bytes(),
            main
        )
        .is_err());
    }
}
