//! The GET of an HTTP health check, over plain HTTP or HTTPS: hyper's
//! HTTP/1 client on one connection (`Connection: close`), over rustls for
//! `https://` URLs, trusting the system's roots (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` too, as OpenSSL reads them) and `[health] ca_file`. Only the
//! status matters: the answer's head is read, at most [`HEAD_BYTES`]
//! of it, and the body never. No redirect is followed (a 3xx fails, as
//! any status but 2xx). Each failure is one line naming the URL's host; a
//! certificate that does not verify says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::http_url::HttpUrl;

/// The most of an answer's status line and headers read (hyper's
/// smallest read buffer); a longer head fails the check.
pub const HEAD_BYTES: usize = 8192;

/// Makes the GETs of a deploy's checks, with one TLS setup for all.
pub struct HttpChecker {
    /// For `https://` URLs: the TLS client, or why there is none.
    tls: Result<TlsConnector, String>,
}

impl HttpChecker {
    /// A checker for `urls`, whose HTTPS trusts the system's roots and
    /// `ca_file`'s certificates (read now, when any URL is `https://`). A
    /// `ca_file` that cannot be read fails every `https://` check, saying why.
    pub fn for_urls(urls: &[HttpUrl], ca_file: Option<&Path>) -> HttpChecker {
        let tls = if urls.iter().any(HttpUrl::is_https) {
            connector(ca_file, "[health]")
        } else {
            Err("no https:// URL was expected".to_owned())
        };
        HttpChecker { tls }
    }

    /// A GET of `url` that must answer 2xx within `timeout`.
    pub async fn get(&self, url: &HttpUrl, timeout: Duration) -> Result<(), String> {
        let exchange = async { answer(connect(url, &self.tls).await?, url).await };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

/// The TLS client of HTTPS checks and channels: the system's roots and
/// `ca_file`'s, which `section` (`[health]`, `[pull]`) names.
pub(crate) fn connector(ca_file: Option<&Path>, section: &str) -> Result<TlsConnector, String> {
    let mut config = tls_config(ca_file, section)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The TLS client setup of every HTTPS client of the daemon: the system's
/// roots and `ca_file`'s, which `section` (`[health]`, `[pull]`) names; no
/// ALPN protocol chosen yet.
pub(crate) fn tls_config(
    ca_file: Option<&Path>,
    section: &str,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's bundle: certificates it cannot parse are skipped, as
    // OpenSSL does; none at all leaves ca_file alone to trust.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(ca_file) = ca_file {
        let certificates = deployd_service::tls::read_certificates(ca_file, "ca_file")
            .map_err(|error| format!("{section} {}", crate::api::chain(&error)))?;
        for certificate in certificates {
            roots.add(certificate).map_err(|error| {
                format!(
                    "{section} ca_file {}: a certificate is not a usable CA: {error}",
                    ca_file.display()
                )
            })?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(deployd_service::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("cannot set up TLS: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A connection to `url`'s host and port: plain for `http://`, through
/// `tls` for `https://` (or `tls`'s reason why there is none).
pub(crate) async fn connect(
    url: &HttpUrl,
    tls: &Result<TlsConnector, String>,
) -> Result<TokioIo<Either<TcpStream, TlsStream<TcpStream>>>, String> {
    let stream = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", url.authority()))?;
    if !url.is_https() {
        return Ok(TokioIo::new(Either::Left(stream)));
    }
    let connector = tls.as_ref().map_err(Clone::clone)?;
    let name = ServerName::try_from(url.host().to_owned())
        .map_err(|_| format!("{} is not a name TLS can check", url.host()))?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|error| handshake_failure(url.host(), &error))?;
    Ok(TokioIo::new(Either::Right(stream)))
}

/// A failed TLS handshake with `host`, in one line; a certificate that does
/// not verify is named as such.
pub(crate) fn handshake_failure(host: &str, error: &std::io::Error) -> String {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("the certificate of {host} does not verify: {why}")
        }
        Some(other) => format!("TLS handshake with {host} failed: {other}"),
        None => format!("TLS handshake with {host} failed: {error}"),
    }
}

/// Sends the GET over `io` and reads the answer's status.
async fn answer<T>(io: T, url: &HttpUrl) -> Result<(), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let request = Request::get(url.path())
        .header(HOST, url.authority())
        .header(USER_AGENT, "deployd")
        .header(CONNECTION, "close")
        .body(String::new())
        .map_err(|error| format!("cannot make the request: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HEAD_BYTES)
        .handshake(io)
        .await
        .map_err(|error| crate::api::chain(&error))?;
    // The connection is driven until the answer arrives; one that ends
    // first (`Connection: close`) has handed the answer on already, or
    // the answer's future says why not.
    let mut connection = std::pin::pin!(connection);
    let mut answered = std::pin::pin!(sender.send_request(request));
    let answered = tokio::select! {
        answered = &mut answered => answered,
        ended = &mut connection => match ended {
            Ok(()) => answered.await,
            Err(error) => return Err(crate::api::chain(&error)),
        },
    };
    let status = answered
        .map(|response| response.status())
        .map_err(|error| crate::api::chain(&error))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests;
