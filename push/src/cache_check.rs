//! Before any deploy request goes out: is each host's system in a cache the
//! host pulls from, signed by a key the host trusts? The caches and keys
//! are the host's own (from its `/v1/status`), or `copy_to` for a host that
//! does not say. A host told to deploy a path its caches lack only finds
//! out when its fetch fails; push finds out first and sends nothing.
//!
//! Binary caches over HTTP(S) and `file://` are read here, an `https://`
//! one trusting what the host's target trusts (the system's roots and the
//! `ca_file`s); a cache push cannot read (another scheme, unreachable from
//! here, a certificate it does not trust) cannot rule a path out, so it
//! only earns a warning.

use std::time::Duration;

use deployd_protocol::{PublicKey, StorePath};

use crate::narinfo::NarInfo;

/// How long one narinfo request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest narinfo read (real ones are well under 4 KiB).
const MAX_NARINFO_BYTES: usize = 64 << 10;

/// What the host pulls from, as push sees it.
pub struct HostCaches<'a> {
    /// The host's name, for messages.
    pub host: &'a str,
    /// Its substituters.
    pub urls: Vec<String>,
    /// The cache keys it trusts (empty: not known, so any signature will do).
    pub trusted_keys: Vec<PublicKey>,
}

/// The verdict for one host's system.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A cache has it, signed by a key the host trusts.
    Present,
    /// Some cache could not be read, and none that could has it; why.
    Unknown(String),
    /// No cache has it: the one-line reason.
    Missing(String),
}

/// Where `host` pulls from: its own report, else `copy_to`.
pub fn host_caches<'a>(
    host: &'a str,
    status: &deployd_protocol::api::StatusResponse,
    copy_to: Option<&str>,
) -> HostCaches<'a> {
    let urls = if status.substituters.is_empty() {
        copy_to.map(str::to_owned).into_iter().collect()
    } else {
        status.substituters.clone()
    };
    HostCaches {
        host,
        urls,
        trusted_keys: status
            .trusted_public_keys
            .iter()
            .filter_map(|key| key.parse().ok())
            .collect(),
    }
}

/// Looks for `system` in `caches`.
pub async fn check(http: &reqwest::Client, caches: &HostCaches<'_>, system: &StorePath) -> Verdict {
    let mut unreadable = Vec::new();
    let mut unsigned = Vec::new();
    for url in &caches.urls {
        match narinfo(http, url, system).await {
            Ok(None) => {}
            Ok(Some(info)) => {
                if caches.trusted_keys.is_empty() || info.signed_by_any(&caches.trusted_keys) {
                    return Verdict::Present;
                }
                let signers = info.signer_names().join(", ");
                unsigned.push(if signers.is_empty() {
                    format!("{url} has it unsigned")
                } else {
                    format!("{url} has it signed by {signers} only")
                });
            }
            Err(why) => unreadable.push(format!("{url}: {why}")),
        }
    }
    let host = caches.host;
    if !unreadable.is_empty() {
        return Verdict::Unknown(format!(
            "cannot tell whether {host}'s caches have {system}: {}",
            unreadable.join("; ")
        ));
    }
    if unsigned.is_empty() {
        Verdict::Missing(format!(
            "{host}'s system {system} is in none of the caches it pulls from ({})",
            caches.urls.join(", ")
        ))
    } else {
        Verdict::Missing(format!(
            "{host}'s system {system} is not signed by a key {host} trusts: {}",
            unsigned.join("; ")
        ))
    }
}

/// The narinfo of `path` in the cache at `url`: `None` when the cache says
/// it has no such path, an error when the cache cannot be read.
async fn narinfo(
    http: &reqwest::Client,
    url: &str,
    path: &StorePath,
) -> Result<Option<NarInfo>, String> {
    let base = url
        .split_once('?')
        .map_or(url, |(base, _)| base)
        .trim_end_matches('/');
    let name = format!("{}.narinfo", path.hash_part());
    let text = if let Some(dir) = base.strip_prefix("file://") {
        match tokio::fs::read(format!("{dir}/{name}")).await {
            Ok(bytes) if bytes.len() <= MAX_NARINFO_BYTES => bytes,
            Ok(_) => return Err("its narinfo is too large".into()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.to_string()),
        }
    } else if base.starts_with("http://") || base.starts_with("https://") {
        let response = http
            .get(format!("{base}/{name}"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|error| crate::tls::problem(&error))?;
        match response.status().as_u16() {
            200 => {}
            // S3 answers 403 for a key it does not hold.
            404 | 403 => return Ok(None),
            status => return Err(format!("it answered HTTP {status}")),
        }
        read_bounded(response).await?
    } else {
        return Err("push reads only http(s):// and file:// caches".into());
    };
    let text = String::from_utf8(text).map_err(|_| "its narinfo is not UTF-8".to_owned())?;
    NarInfo::parse(&text)
        .map(Some)
        .ok_or_else(|| "its narinfo lacks StorePath, NarHash or NarSize".to_owned())
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| crate::tls::problem(&error))?
    {
        if body.len() + chunk.len() > MAX_NARINFO_BYTES {
            return Err("its narinfo is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> StorePath {
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path")
    }

    #[tokio::test]
    async fn file_caches_are_read_and_a_missing_path_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}", dir.path().display());
        let caches = HostCaches {
            host: "sambirano",
            urls: vec![url.clone()],
            trusted_keys: Vec::new(),
        };
        let http = reqwest::Client::new();
        let verdict = check(&http, &caches, &system()).await;
        assert_eq!(
            verdict,
            Verdict::Missing(format!(
                "sambirano's system {} is in none of the caches it pulls from ({url})",
                system()
            ))
        );
        std::fs::write(
            dir.path().join("0c8rfq3blmslvm3w5qd4ymrhng1nkdk9.narinfo"),
            format!("StorePath: {}\nNarHash: sha256:x\nNarSize: 1\n", system()),
        )
        .expect("write");
        assert_eq!(check(&http, &caches, &system()).await, Verdict::Present);

        let key = deployd_protocol::SecretKey::generate("cache-1".parse().expect("name"))
            .expect("random");
        let trusting = HostCaches {
            trusted_keys: vec![key.public_key()],
            ..caches
        };
        let Verdict::Missing(why) = check(&http, &trusting, &system()).await else {
            panic!("an unsigned path counts as missing");
        };
        assert!(why.contains("has it unsigned"), "{why}");
        assert!(
            why.contains("is not signed by a key sambirano trusts"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_cache_push_cannot_read_rules_nothing_out() {
        let caches = HostCaches {
            host: "sambirano",
            urls: vec!["s3://bucket?region=eu".into()],
            trusted_keys: Vec::new(),
        };
        let verdict = check(&reqwest::Client::new(), &caches, &system()).await;
        assert!(matches!(verdict, Verdict::Unknown(_)), "{verdict:?}");
    }
}
