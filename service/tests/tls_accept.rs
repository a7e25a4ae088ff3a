//! The accept loop over HTTPS: a client that trusts the CA gets its
//! answer; a plain-HTTP request gets no HTTP answer and is closed at once;
//! and the TLS handshake counts against the header timeout: a peer that
//! connects and sends nothing, one that stops in the middle of its
//! handshake, and one that finishes it and then says nothing are each cut
//! off once the header timeout after connecting has passed.
//! Certificates are made by `openssl`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use deployd_service::http::{serve, Transport, HEADER_TIMEOUT};
use deployd_service::tls::{acceptor, read_certificates, CertificateFiles, ReloadingCertificate};
use tokio_util::sync::CancellationToken;

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(args: &str, dir: &Path) {
    let output = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "openssl {args}: {output:?}");
}

/// A CA (`ca.crt`) and a certificate it issued for 127.0.0.1
/// (`server.crt`, `server.key`) in `dir`.
fn ca_and_server(dir: &Path) -> CertificateFiles {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        &format!("req -x509 {ec} -days 2 -subj /CN=test-CA -keyout ca.key -out ca.crt"),
        dir,
    );
    openssl(
        &format!("req {ec} -subj /CN=127.0.0.1 -keyout server.key -out server.csr"),
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .expect("write");
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
         -extfile server.ext -out server.crt",
        dir,
    );
    CertificateFiles {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
    }
}

/// A TLS client that trusts only `ca`.
fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(ca, "ca_file").expect("CA") {
        roots.add(certificate).expect("CA certificate");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(deployd_service::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// GET /healthz over TLS; the whole answer.
fn https_get(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let name = "127.0.0.1".try_into().expect("server name");
    let connection = rustls::ClientConnection::new(config, name).expect("client");
    let stream = TcpStream::connect(address).expect("connect");
    let mut tls = rustls::StreamOwned::new(connection, stream);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = Vec::new();
    // The server may end without close_notify after the answer.
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until the server closes the connection: how long that took from
/// `connected`, and what it sent; `None` if still open after `limit`.
fn until_closed(
    mut stream: TcpStream,
    connected: Instant,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some((connected.elapsed(), received)),
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some((connected.elapsed(), received))
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_with_the_handshake_inside_the_header_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ca_and_server(dir.path());
    let certificate = Arc::new(ReloadingCertificate::load(files).expect("pair"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let transport = Transport::Tls(acceptor(certificate).expect("acceptor"));
    let server = tokio::spawn(serve(listener, router, transport, shutdown.clone()));
    let config = client_config(&dir.path().join("ca.crt"));

    let limit = HEADER_TIMEOUT + Duration::from_secs(3);
    let checks = tokio::task::spawn_blocking(move || {
        let answer = https_get(address, config.clone());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");

        // Plain HTTP: the handshake fails; no HTTP answer, closed at once.
        let mut plain = TcpStream::connect(address).expect("connect");
        let connected = Instant::now();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        let (took, received) =
            until_closed(plain, connected, limit).expect("a plain request left open");
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
        assert!(
            !String::from_utf8_lossy(&received).contains("HTTP/"),
            "answered plain HTTP: {received:?}"
        );
        // What arrived, if anything, is a TLS alert record (type 21).
        assert!(received.is_empty() || received[0] == 21, "{received:?}");

        let silent = std::thread::spawn(move || {
            let stream = TcpStream::connect(address).expect("connect");
            until_closed(stream, Instant::now(), limit)
        });
        // A TLS record header and then nothing: a handshake that stalls.
        let stalled = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).expect("connect");
            let since = Instant::now();
            stream.write_all(&[22, 3, 1, 2, 0]).expect("write");
            until_closed(stream, since, limit)
        });
        // A handshake begun late and finished, then no request: the time
        // the handshake took is not given again for the headers.
        let idle = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).expect("connect");
            let since = Instant::now();
            std::thread::sleep(HEADER_TIMEOUT / 2);
            let name = "127.0.0.1".try_into().expect("server name");
            let mut connection = rustls::ClientConnection::new(config, name).expect("client");
            while connection.is_handshaking() {
                connection.complete_io(&mut stream).expect("handshake");
            }
            until_closed(stream, since, limit)
        });
        [
            ("silent", silent),
            ("stalled handshake", stalled),
            ("idle after a slow handshake", idle),
        ]
        .map(|(peer, wait)| (peer, wait.join().expect("thread")))
    })
    .await
    .expect("checks");
    for (peer, closed) in checks {
        let (took, _) = closed.unwrap_or_else(|| panic!("a {peer} peer was not cut off"));
        assert!(
            took <= HEADER_TIMEOUT + Duration::from_secs(1),
            "{peer}: {took:?}"
        );
        assert!(
            took >= HEADER_TIMEOUT - Duration::from_secs(1),
            "{peer}: {took:?}"
        );
    }
    shutdown.cancel();
    server.await.expect("server").expect("served");
}
