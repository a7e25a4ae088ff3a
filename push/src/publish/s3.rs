//! A channel in an S3 bucket, or any S3-compatible store:
//! `s3://BUCKET[/PREFIX][?region=R&endpoint=E&scheme=http]`, written through
//! the `object_store` crate (request signing, retries, credentials).
//!
//! The URL's parameters are named as in Nix's `s3://` store URLs, so the
//! bucket a fleet's binary cache lives in is named the same way here:
//! `region` (default `us-east-1`, or `AWS_DEFAULT_REGION`), `endpoint` (an
//! S3-compatible server: a host name, `HOST:PORT`, or a URL) and `scheme`
//! (`https`, the default, or `http` for an endpoint without TLS). The
//! credentials come from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity, container
//! and instance credentials), never from the URL. Nix's `profile` is not
//! read: set the variables instead.
//!
//! A state is written on a condition (S3's conditional writes): that the
//! object's e-tag is still the one read (`If-Match`), or, when none was
//! read, that there is still none (`If-None-Match: *`); otherwise the write
//! is [`Written::Replayed`] and push publish reads again. A store that
//! does not honour the conditions writes anyway (the last writer wins).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_protocol::{HostName, MAX_ENVELOPE_BYTES};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use super::channel::{check_size, state_key, Stored, Written};

/// How long one request to the store may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A bucket and a prefix in it.
pub struct S3Channel {
    store: Box<dyn ObjectStore>,
    /// The folder of the channel in the bucket (`""` at its root).
    prefix: String,
    /// The URL, for messages.
    url: String,
}

/// What an `s3://` URL says.
#[derive(Debug, PartialEq, Eq)]
struct S3Url {
    bucket: String,
    prefix: String,
    region: Option<String>,
    /// The endpoint as a URL (`scheme://host[:port]`).
    endpoint: Option<String>,
}

fn parse_url(url: &str) -> Result<S3Url> {
    let rest = url.strip_prefix("s3://").context("not an s3:// URL")?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    if bucket.is_empty() {
        bail!("the channel {url:?} names no bucket: s3://BUCKET/PREFIX");
    }
    let (mut region, mut endpoint, mut scheme) = (None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .with_context(|| format!("the channel {url:?}: {name} is not UTF-8"))?
            .into_owned();
        match name {
            "region" => region = Some(value),
            "endpoint" => endpoint = Some(value),
            "scheme" if value == "http" || value == "https" => scheme = Some(value),
            "scheme" => bail!("the channel {url:?}: scheme must be http or https"),
            other => bail!(
                "the channel {url:?}: unknown parameter {other:?} (push publish reads region, endpoint and scheme; credentials come from the AWS_* environment)"
            ),
        }
    }
    let endpoint = endpoint.map(|endpoint| {
        if endpoint.contains("://") {
            endpoint
        } else {
            format!("{}://{endpoint}", scheme.as_deref().unwrap_or("https"))
        }
    });
    Ok(S3Url {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
        region,
        endpoint,
    })
}

impl S3Channel {
    /// The channel at `url` (`s3://...`), with the AWS environment's
    /// credentials. Nothing is asked of the store yet.
    pub fn open(url: &str) -> Result<S3Channel> {
        let parsed = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&parsed.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(ClientOptions::new().with_timeout(REQUEST_TIMEOUT));
        if let Some(region) = &parsed.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &parsed.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .with_context(|| format!("the channel {url:?}"))?;
        Ok(S3Channel {
            store: Box::new(store),
            prefix: parsed.prefix,
            url: url.to_owned(),
        })
    }

    fn location(&self, host: &HostName) -> ObjectPath {
        let key = state_key(host);
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The state held for `host`, with its object's e-tag; `None` when
    /// there is none.
    pub async fn read(&self, host: &HostName) -> Result<Option<Stored>> {
        let location = self.location(host);
        let what = format!("{}: {location}", self.url);
        let got = match self.store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {what}")),
        };
        if got.meta.size > MAX_ENVELOPE_BYTES as u64 {
            bail!("{what} is larger than any desired state ({MAX_ENVELOPE_BYTES} bytes at most)");
        }
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .with_context(|| format!("reading {what}"))?;
        check_size(&bytes, &what)?;
        Ok(Some(Stored {
            bytes: bytes.to_vec(),
            version: Some(version),
        }))
    }

    /// Writes `envelope` as `host`'s state (`application/json`, so a
    /// website endpoint or a CDN serves it as such), on the condition that
    /// the object is still `replaces` (`None`: that there is none).
    pub async fn write(
        &self,
        host: &HostName,
        envelope: Vec<u8>,
        replaces: Option<&Stored>,
    ) -> Result<Written> {
        let location = self.location(host);
        let what = format!("{}: {location}", self.url);
        let mode = match replaces {
            None => PutMode::Create,
            Some(Stored {
                version: Some(version),
                ..
            }) if version.e_tag.is_some() => PutMode::Update(version.clone()),
            Some(_) => bail!("{what} was read without an e-tag: it cannot be replaced on the condition that it is unchanged"),
        };
        let options = PutOptions {
            mode,
            attributes: Attributes::from_iter([(Attribute::ContentType, "application/json")]),
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from(envelope), options)
            .await
        {
            Ok(_) => Ok(Written::Done),
            Err(object_store::Error::Precondition { .. }) => Ok(Written::Replayed(format!(
                "{what} changed since it was read"
            ))),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Written::Replayed(format!(
                "{what} was written since it was read"
            ))),
            Err(error) => Err(error).with_context(|| format!("writing {what}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel in a store in memory (`object_store`'s own, which keeps
    /// the same conditions as S3).
    fn in_memory() -> S3Channel {
        S3Channel {
            store: Box::new(object_store::memory::InMemory::new()),
            prefix: "channel".into(),
            url: "s3://fleet/channel".into(),
        }
    }

    #[tokio::test]
    async fn a_state_replaces_only_the_object_read() {
        let channel = in_memory();
        let host: HostName = "pi".parse().expect("host");
        assert_eq!(channel.read(&host).await.expect("read"), None);
        // Two publishes read nothing: the first writes, the second is told.
        let first = channel.write(&host, b"one".to_vec(), None).await;
        assert_eq!(first.expect("write"), Written::Done);
        let second = channel.write(&host, b"two".to_vec(), None).await;
        assert!(matches!(second, Ok(Written::Replayed(_))), "{second:?}");
        // Two publishes read "one": the first replaces it, the second is told.
        let read = channel.read(&host).await.expect("read").expect("held");
        assert_eq!(read.bytes, b"one");
        let first = channel.write(&host, b"three".to_vec(), Some(&read)).await;
        assert_eq!(first.expect("write"), Written::Done);
        let second = channel.write(&host, b"four".to_vec(), Some(&read)).await;
        assert!(matches!(second, Ok(Written::Replayed(_))), "{second:?}");
        let held = channel.read(&host).await.expect("read").expect("held");
        assert_eq!(held.bytes, b"three");
    }

    #[test]
    fn urls_are_read_as_nix_reads_its_s3_urls() {
        assert_eq!(
            parse_url("s3://fleet").expect("bucket"),
            S3Url {
                bucket: "fleet".into(),
                prefix: String::new(),
                region: None,
                endpoint: None
            }
        );
        assert_eq!(
            parse_url(
                "s3://fleet/channel/prod/?region=eu-west-1&endpoint=minio.lan%3A9000&scheme=http"
            )
            .expect("all"),
            S3Url {
                bucket: "fleet".into(),
                prefix: "channel/prod".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://minio.lan:9000".into()),
            }
        );
        assert_eq!(
            parse_url("s3://fleet/c?endpoint=https://s3.example.org")
                .expect("endpoint URL")
                .endpoint
                .as_deref(),
            Some("https://s3.example.org")
        );
        assert_eq!(
            parse_url("s3://fleet?endpoint=s3.example.org")
                .expect("https by default")
                .endpoint
                .as_deref(),
            Some("https://s3.example.org")
        );
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://b?profile=ops",
            "s3://b?scheme=ftp",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
