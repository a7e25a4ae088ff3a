//! HTTP checks want 2xx over plain HTTP and HTTPS; an HTTPS server whose
//! certificate does not verify (an unknown CA, another name) fails the
//! check in one line that names the host and says so; `ca_file` adds a CA;
//! an answer's head past the bound, silence and a plain-HTTP server behind
//! an `https://` URL fail too.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use deployd_service::http::{serve, Transport};
use deployd_service::tls::{acceptor, CertificateFiles, ReloadingCertificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;

use crate::test_certificates::{Issued, TestCa};

const TIMEOUT: Duration = Duration::from_secs(10);

fn url(text: &str) -> HttpUrl {
    text.parse().expect("url")
}

/// A server on 127.0.0.1 answering `/up` 200, `/down` 503 and `/big`
/// with a head past [`HEAD_BYTES`]; over TLS with `issued`'s certificate
/// when given. Its port; it stops when `shutdown` is cancelled.
async fn server(issued: Option<&Issued>, shutdown: &CancellationToken) -> u16 {
    let router = Router::new()
        .route("/up", get(|| async { "ok" }))
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/big",
            get(|| async {
                let mut response = axum::response::Response::new(axum::body::Body::empty());
                let big = HeaderValue::from_str(&"x".repeat(2 * HEAD_BYTES)).expect("value");
                response.headers_mut().insert("x-big", big);
                response
            }),
        );
    let transport = match issued {
        Some(issued) => {
            let files = CertificateFiles {
                cert_file: issued.cert.clone(),
                key_file: issued.key.clone(),
            };
            let certificate = ReloadingCertificate::load(files).expect("pair");
            Transport::Tls(acceptor(Arc::new(certificate)).expect("acceptor"))
        }
        None => Transport::Plain,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(serve(listener, router, transport, shutdown.clone()));
    port
}

#[tokio::test]
async fn plain_http_checks_want_2xx_within_bounds() {
    let shutdown = CancellationToken::new();
    let port = server(None, &shutdown).await;
    let checker = HttpChecker::for_urls(&[], None);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        checker.get(&url(&format!("{base}/up")), TIMEOUT).await,
        Ok(())
    );
    let down = checker
        .get(&url(&format!("{base}/down")), TIMEOUT)
        .await
        .expect_err("503");
    assert_eq!(down, "answered 503 Service Unavailable");
    let big = checker
        .get(&url(&format!("{base}/big")), TIMEOUT)
        .await
        .expect_err("a head past the bound");
    assert!(big.contains("too large"), "{big}");
    let closed = checker
        .get(&url("http://127.0.0.1:9/nothing"), TIMEOUT)
        .await
        .expect_err("nothing listens");
    assert!(
        closed.starts_with("cannot connect to 127.0.0.1:9"),
        "{closed}"
    );

    // A server that accepts, reads, and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("address").port();
    tokio::spawn(async move {
        let (mut stream, _) = silent.accept().await.expect("accept");
        let mut buffer = [0u8; 1024];
        let _ = stream.read(&mut buffer).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
    });
    let waited = checker
        .get(
            &url(&format!("http://127.0.0.1:{silent_port}/")),
            Duration::from_millis(300),
        )
        .await
        .expect_err("no answer");
    assert_eq!(waited, "no answer within 300ms");
    shutdown.cancel();
}

#[tokio::test]
async fn https_checks_trust_the_system_and_ca_file_and_say_when_a_certificate_does_not_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "fleet-ca");
    let for_ip = ca.issue("health", "IP:127.0.0.1");
    let for_other = ca.issue("other", "DNS:other.example");
    let shutdown = CancellationToken::new();
    let good = format!(
        "https://127.0.0.1:{}",
        server(Some(&for_ip), &shutdown).await
    );
    let misnamed = format!(
        "https://127.0.0.1:{}",
        server(Some(&for_other), &shutdown).await
    );
    let urls = [url(&format!("{good}/up"))];

    let trusting = HttpChecker::for_urls(&urls, Some(&ca.cert()));
    assert_eq!(trusting.get(&urls[0], TIMEOUT).await, Ok(()));
    let down = trusting
        .get(&url(&format!("{good}/down")), TIMEOUT)
        .await
        .expect_err("503");
    assert_eq!(down, "answered 503 Service Unavailable");

    // The CA only in ca_file: without it, the system's roots do not know it.
    let system_only = HttpChecker::for_urls(&urls, None);
    let unknown = system_only
        .get(&urls[0], TIMEOUT)
        .await
        .expect_err("an unknown CA");
    assert_eq!(
        unknown,
        "the certificate of 127.0.0.1 does not verify: UnknownIssuer"
    );
    let wrong_name = trusting
        .get(&url(&format!("{misnamed}/up")), TIMEOUT)
        .await
        .expect_err("another name");
    assert!(
        wrong_name.starts_with("the certificate of 127.0.0.1 does not verify: certificate not valid for name \"127.0.0.1\""),
        "{wrong_name}"
    );
    for message in [&unknown, &wrong_name] {
        assert!(!message.contains('\n'), "{message}");
    }

    // An https:// URL whose server speaks plain HTTP.
    let plain = server(None, &shutdown).await;
    let not_tls = trusting
        .get(&url(&format!("https://127.0.0.1:{plain}/up")), TIMEOUT)
        .await
        .expect_err("no TLS");
    assert!(
        not_tls.starts_with("TLS handshake with 127.0.0.1 failed"),
        "{not_tls}"
    );

    // A ca_file that cannot be read fails every https:// check, saying why.
    let missing = dir.path().join("missing.pem");
    let unreadable = HttpChecker::for_urls(&urls, Some(&missing))
        .get(&urls[0], TIMEOUT)
        .await
        .expect_err("no ca_file");
    assert!(
        unreadable.starts_with(&format!(
            "[health] cannot read ca_file {}",
            missing.display()
        )),
        "{unreadable}"
    );
    shutdown.cancel();
}
