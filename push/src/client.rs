//! Talking to deployd hosts over HTTP or HTTPS: signed requests, status,
//! records, and the event stream (Server-Sent Events, parsed here). A host
//! whose target is `https://` is reached with a client that trusts its
//! CAs and refuses any `http://` URL, so nothing to it ever goes in clear.

use std::time::Duration;

use deployd_protocol::api::{DeployAccepted, DeployRecord, StatusResponse};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_protocol::plan::{PlanResponse, PLAN_PATH};
use deployd_protocol::{Message, ReadRequest, Request, SecretKey, StorePath};
use futures_util::stream::{self, Stream, StreamExt};

pub use crate::host_error::HostError;
use crate::host_error::{error_answer, unreadable_answer, Cause, Timeouts, Unreachable};
use crate::inventory::Target;
use crate::tls::Clients;

/// How long connecting to a host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a signed read stays valid.
const READ_LIFETIME_S: u64 = 60;
/// How long a plan may take (the host asks its caches about a closure).
const PLAN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a plain request may take (event streams have no limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an event stream may stay silent (the daemon's keep-alive comes
/// every 15 s).
const SSE_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// The longest event stream line accepted.
const MAX_SSE_LINE_BYTES: usize = 1 << 20;
/// The largest event accepted (a final record with its log tail is far smaller).
const MAX_SSE_EVENT_BYTES: usize = 4 << 20;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name.
    pub name: String,
    /// Its `data:`.
    pub data: String,
    /// Its `id:`, if it has one (deployd's cursor, for `Last-Event-ID`).
    pub id: Option<String>,
}

/// An HTTP(S) client for deployd hosts. With a key, every read carries a
/// signed `read` (`Authorization: DSSE ...`), for hosts that require it.
#[derive(Clone)]
pub struct Client {
    /// One HTTP client per set of trusted CAs, shared by the clones.
    http: Arc<Clients>,
    reader: Option<Arc<SecretKey>>,
    /// How long a request may take (told in the error when it runs out).
    request_timeout: Duration,
}

impl Client {
    /// A client with bounded connect times, signing reads with `reader`.
    pub fn new(reader: Option<Arc<SecretKey>>) -> Self {
        let http = Arc::new(Clients::new(|builder| {
            builder.connect_timeout(CONNECT_TIMEOUT)
        }));
        Client {
            http,
            reader,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// This client with a plain request's timeout of `timeout` instead.
    pub fn with_request_timeout(self, timeout: Duration) -> Self {
        Client {
            request_timeout: timeout,
            ..self
        }
    }

    /// The timeouts of a plain request, and of an event stream (`None`).
    fn timeouts(&self, streaming: bool) -> Timeouts {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            request: (!streaming).then_some(self.request_timeout),
        }
    }

    /// A client that opens a new connection for every request.
    pub fn fresh() -> Self {
        let http = Arc::new(Clients::new(|builder| {
            builder
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(0)
        }));
        Client {
            http,
            reader: None,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// The HTTP client for `target`: its CAs, HTTPS only when it is `https://`.
    fn http(&self, target: &Target) -> Result<reqwest::Client, HostError> {
        self.http
            .get(&target.trust, target.https())
            .map_err(HostError::Setup)
    }

    /// Sends a signed envelope to `path`.
    pub async fn send_signed(
        &self,
        target: &Target,
        path: &str,
        envelope: Vec<u8>,
    ) -> Result<DeployAccepted, HostError> {
        let request = self
            .http(target)?
            .post(format!("{}{path}", target.url))
            .header("content-type", "application/json")
            .timeout(self.request_timeout)
            .body(envelope);
        self.answer(request).await
    }

    /// The host's status.
    pub async fn status(&self, target: &Target) -> Result<StatusResponse, HostError> {
        self.get(target, "/v1/status").await
    }

    /// Whether the host's deployd answers `GET /healthz` (always open).
    pub async fn healthy(&self, target: &Target) -> Result<(), HostError> {
        let request = self
            .http(target)?
            .get(format!("{}/healthz", target.url))
            .timeout(self.request_timeout);
        self.send(request, false).await.map(|_| ())
    }

    /// What deploying `system` would change on the host (`GET /v1/plan`),
    /// changing nothing there. The store path goes in the query, so a
    /// signed `read` names it.
    pub async fn plan(
        &self,
        target: &Target,
        system: &StorePath,
    ) -> Result<PlanResponse, HostError> {
        let path = format!("{PLAN_PATH}?store_path={}", query_value(system.as_str()));
        // Nix asks the caches about the whole closure: longer than a read.
        let request = self.signed_get(target, &path)?.timeout(PLAN_TIMEOUT);
        self.answer(request).await
    }

    /// A deploy's record.
    pub async fn record(&self, target: &Target, id: &str) -> Result<DeployRecord, HostError> {
        self.get(target, &format!("/v1/deploys/{id}")).await
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        target: &Target,
        path: &str,
    ) -> Result<T, HostError> {
        let request = self.signed_get(target, path)?.timeout(self.request_timeout);
        self.answer(request).await
    }

    /// Sends `request`; deployd's error, or an unexpected answer naming
    /// the request, for anything but a success.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        streaming: bool,
    ) -> Result<(reqwest::Response, reqwest::Method), HostError> {
        let timeouts = self.timeouts(streaming);
        let (http, request) = request.build_split();
        let request = request.map_err(|error| HostError::unreachable(error, &timeouts))?;
        let method = request.method().clone();
        let response = http
            .execute(request)
            .await
            .map_err(|error| HostError::unreachable(error, &timeouts))?;
        if response.status().is_success() {
            return Ok((response, method));
        }
        let (status, url) = (response.status(), response.url().clone());
        let body = response
            .bytes()
            .await
            .map_err(|error| HostError::unreachable(error, &timeouts))?;
        Err(error_answer(&method, &url, status, &body))
    }

    /// Sends `request` and reads its answer's JSON.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, HostError> {
        let (response, method) = self.send(request, false).await?;
        let url = response.url().to_string();
        response
            .json()
            .await
            .map_err(|error| unreadable_answer(&method, url, error))
    }

    /// A GET of `path`, with a signed `read` for exactly it when there is a key.
    fn signed_get(
        &self,
        target: &Target,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, HostError> {
        let request = self.http(target)?.get(format!("{}{path}", target.url));
        let Some(key) = &self.reader else {
            return Ok(request);
        };
        let message = Message::new(
            target.name.clone(),
            Request::Read(ReadRequest::new("GET", path)),
            crate::sign::now(),
            READ_LIFETIME_S,
        );
        let envelope = STANDARD.encode(message.sign(&[key]).to_json());
        Ok(request.header("authorization", format!("DSSE {envelope}")))
    }

    /// A deploy's event stream: from its first event, or after the one
    /// whose id is `last_event_id` (a reconnection).
    pub async fn events(
        &self,
        target: &Target,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<SseEvent, HostError>>, HostError> {
        let mut request = self.signed_get(target, &format!("/v1/deploys/{id}/events"))?;
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let (response, _) = self.send(request, true).await?;
        let timeouts = self.timeouts(true);
        let chunks = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|error| HostError::unreachable(error, &timeouts)));
        Ok(parse_sse(chunks))
    }
}

/// `value` percent-encoded for a query string: every byte but letters,
/// digits and `/._-~` (a store path's `+` would read as a space).
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Turns a byte stream into Server-Sent Events.
pub fn parse_sse<S>(chunks: S) -> impl Stream<Item = Result<SseEvent, HostError>>
where
    S: Stream<Item = Result<bytes::Bytes, HostError>> + Unpin,
{
    // The state is `None` once the stream failed: an error ends it.
    // Bytes until a whole line is there: a character split across chunks
    // is decoded whole.
    let start = (
        chunks,
        Vec::<u8>::new(),
        SseEvent {
            name: String::new(),
            data: String::new(),
            id: None,
        },
    );
    stream::unfold(Some(start), |state| async move {
        let (mut chunks, mut buffer, mut event) = state?;
        loop {
            if let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
                let bytes: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&bytes);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !event.name.is_empty() || !event.data.is_empty() {
                        let done = std::mem::replace(
                            &mut event,
                            SseEvent {
                                name: String::new(),
                                data: String::new(),
                                id: None,
                            },
                        );
                        return Some((Ok(done), Some((chunks, buffer, event))));
                    }
                } else if let Some(value) = line.strip_prefix("event:") {
                    event.name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("id:") {
                    event.id = Some(value.strip_prefix(' ').unwrap_or(value).to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event
                        .data
                        .push_str(value.strip_prefix(' ').unwrap_or(value));
                }
                continue;
            }
            if buffer.len() > MAX_SSE_LINE_BYTES || event.data.len() > MAX_SSE_EVENT_BYTES {
                let error =
                    HostError::Protocol("an event stream line or event is too large".into());
                return Some((Err(error), None));
            }
            // The daemon sends a keep-alive every 15 s: silence this long
            // means the host or the network is gone.
            match tokio::time::timeout(SSE_IDLE_TIMEOUT, chunks.next()).await {
                Ok(Some(Ok(bytes))) => buffer.extend_from_slice(&bytes),
                Ok(Some(Err(error))) => return Some((Err(error), None)),
                Ok(None) => return None,
                Err(_) => {
                    let error = HostError::Unreachable(Box::new(Unreachable {
                        url: None,
                        cause: Cause::Silent(SSE_IDLE_TIMEOUT),
                        error: None,
                    }));
                    return Some((Err(error), None));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_events_split_across_chunks() {
        let chunks = stream::iter(
            [
                "event: state\ndata: {\"a\"",
                ":1}\n\n: keep-alive\n\nevent: log\r\ndata: one\ndata: two\n\n",
                "event: done\ndata: {}\n\n",
            ]
            .map(|text| Ok(bytes::Bytes::from(text))),
        );
        let events: Vec<SseEvent> = parse_sse(chunks).map(|e| e.expect("event")).collect().await;
        let pairs: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.name.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("state", "{\"a\":1}"), ("log", "one\ntwo"), ("done", "{}")]
        );
    }

    #[test]
    fn store_paths_are_encoded_for_a_query() {
        assert_eq!(
            query_value("/nix/store/abc-gtk+3-3.24?x=1 y"),
            "/nix/store/abc-gtk%2B3-3.24%3Fx%3D1%20y"
        );
    }

    #[tokio::test]
    async fn event_ids_are_read() {
        let chunks = stream::iter(
            ["event: log\nid: 2.5\ndata: x\n\nevent: note\ndata: y\n\n"]
                .map(|text| Ok(bytes::Bytes::from(text))),
        );
        let events: Vec<SseEvent> = parse_sse(chunks).map(|e| e.expect("event")).collect().await;
        assert_eq!(events[0].id.as_deref(), Some("2.5"));
        assert_eq!(events[1].id, None);
    }

    #[tokio::test]
    async fn a_character_split_across_chunks_is_kept_whole() {
        let text = "event: log\ndata: déployé\n\n".as_bytes();
        let cut = text.iter().position(|&byte| byte == 0xC3).expect("é") + 1;
        let chunks = stream::iter(
            [text[..cut].to_vec(), text[cut..].to_vec()].map(|part| Ok(bytes::Bytes::from(part))),
        );
        let events: Vec<SseEvent> = parse_sse(chunks).map(|e| e.expect("event")).collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "déployé");
    }

    #[tokio::test]
    async fn an_endless_line_is_an_error_not_a_memory_leak() {
        let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = stream::iter((0..64).map(move |_| Ok(chunk.clone())));
        let events: Vec<Result<SseEvent, HostError>> = parse_sse(chunks).collect().await;
        assert!(
            matches!(events.as_slice(), [Err(HostError::Protocol(_))]),
            "{events:?}"
        );
    }
}
