//! The HTTP(S) exchanges of a pulling host with its channels: one GET of a
//! desired state, one POST of a report, each on its own connection
//! (`Connection: close`), with hyper's HTTP/1 client over the TLS set-up
//! HTTPS health checks use (the system's roots and `[pull] ca_file`). The
//! answer's body is read up to [`MAX_ENVELOPE_BYTES`] and no further; every
//! exchange has a deadline. No redirect is followed.

use std::path::Path;
use std::time::Duration;

use deployd_protocol::MAX_ENVELOPE_BYTES;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::Request;
use tokio_rustls::TlsConnector;

use crate::http_url::HttpUrl;
use crate::pipeline::health::http::{connect, connector};

/// The header by which push serve's channel names itself.
pub const CHANNEL_HEADER: &str = "deployd-channel";
/// Its value.
pub const PUSH_SERVE: &str = "push-serve";
/// The most of an answer's status line and headers read.
const HEAD_BYTES: usize = 8192;

/// What a channel answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Whether it carried `Deployd-Channel: push-serve`.
    pub push_serve: bool,
    /// Its `Retry-After`, when given in seconds.
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_ENVELOPE_BYTES`].
    pub body: Vec<u8>,
}

/// Talks to HTTP(S) channels, with one TLS set-up for all.
pub struct ChannelClient {
    /// For `https://` channels: the TLS client, or why there is none.
    tls: Result<TlsConnector, String>,
}

impl ChannelClient {
    /// A client trusting the system's roots and `ca_file`'s certificates.
    pub fn new(ca_file: Option<&Path>) -> ChannelClient {
        ChannelClient {
            tls: connector(ca_file, "[pull]"),
        }
    }

    /// GETs `url` within `timeout`.
    pub async fn get(&self, url: &HttpUrl, timeout: Duration) -> Result<Answer, String> {
        self.exchange(url, None, timeout).await
    }

    /// POSTs `body` (JSON) to `url` within `timeout`.
    pub async fn post(
        &self,
        url: &HttpUrl,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        self.exchange(url, Some(body), timeout).await
    }

    async fn exchange(
        &self,
        url: &HttpUrl,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let request = request(url, body)?;
        let exchange = async { send(connect(url, &self.tls).await?, request).await };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

/// The request for `url`: a GET, or a POST of `body`.
fn request(url: &HttpUrl, body: Option<Vec<u8>>) -> Result<Request<Full<Bytes>>, String> {
    let builder = Request::builder()
        .uri(url.path())
        .header(HOST, url.authority())
        .header(USER_AGENT, concat!("deployd/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close");
    let request = match body {
        None => builder.method("GET").body(Full::default()),
        Some(body) => builder
            .method("POST")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body))),
    };
    request.map_err(|error| format!("cannot make the request: {error}"))
}

/// Sends `request` over `io`; reads the status, the channel header and
/// the body (bounded).
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HEAD_BYTES.max(MAX_ENVELOPE_BYTES))
        .handshake(io)
        .await
        .map_err(|error| crate::api::chain(&error))?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| crate::api::chain(&error))?;
        let status = response.status().as_u16();
        let push_serve = response
            .headers()
            .get(CHANNEL_HEADER)
            .is_some_and(|value| value.as_bytes() == PUSH_SERVE.as_bytes());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Limited::new(response.into_body(), MAX_ENVELOPE_BYTES)
            .collect()
            .await
            .map_err(|error| {
                format!("the answer's body is unreadable or larger than {MAX_ENVELOPE_BYTES} bytes: {error}")
            })?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            push_serve,
            retry_after,
            body,
        })
    };
    // The connection is driven until the answer is read; one that ends
    // first (`Connection: close`) has handed the answer on already, or the
    // answer's future says why not.
    let mut connection = std::pin::pin!(connection);
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        answered = &mut answer => answered,
        ended = &mut connection => match ended {
            Ok(()) => answer.await,
            Err(error) => Err(crate::api::chain(&error)),
        },
    }
}
