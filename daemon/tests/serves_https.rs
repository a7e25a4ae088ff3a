//! The real `deployd` with `[tls]` serves HTTPS only, over real TLS with
//! certificates made by `openssl`: a client that trusts the CA gets its
//! answers, one that does not is refused, and a plain-HTTP request gets no
//! HTTP answer. The certificate and key replaced on disk (an ACME renewal)
//! are served from the next connection on, without a restart, while a
//! connection already open goes on; a pair that does not load is logged and
//! the previous one kept. SIGHUP takes new paths from the config, refuses a
//! config whose pair does not load, and says that turning TLS off needs a
//! restart.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use support::certificates::{Issued, TestCa};
use support::running::Running;
use support::{config_text, key};

/// A TLS client trusting `roots` only.
fn client(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(deployd_service::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// The first certificate in a PEM file.
fn certificate(path: &Path) -> CertificateDer<'static> {
    deployd_service::tls::read_certificates(path, "cert_file").expect("PEM")[0].clone()
}

/// A TLS connection to the daemon, handshake done.
struct Connection(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Connection {
    fn open(address: &str, config: Arc<rustls::ClientConfig>) -> Result<Connection, rustls::Error> {
        let name = "127.0.0.1".try_into().expect("server name");
        let mut connection = rustls::ClientConnection::new(config, name)?;
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while connection.is_handshaking() {
            connection.complete_io(&mut stream).map_err(|error| {
                match error
                    .into_inner()
                    .map(|inner| inner.downcast::<rustls::Error>())
                {
                    Some(Ok(tls)) => *tls,
                    other => panic!("not a TLS error: {other:?}"),
                }
            })?;
        }
        Ok(Connection(rustls::StreamOwned::new(connection, stream)))
    }

    /// The certificate the server showed.
    fn served(&self) -> CertificateDer<'static> {
        self.0.conn.peer_certificates().expect("a certificate")[0].clone()
    }

    /// GET `path` on this connection (kept alive); the status and body.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        self.0.flush().expect("flush");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte).expect("answer head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .expect("status")
            .parse()
            .expect("code");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().expect("length"))
            })
            .expect("a content-length");
        let mut body = vec![0u8; length];
        self.0.read_exact(&mut body).expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Copies `pair` into place as `live` by rename (as an atomic writer does).
fn install(pair: &Issued, live: &Issued) {
    for (from, to) in [(&pair.cert, &live.cert), (&pair.key, &live.key)] {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).expect("copy");
        std::fs::rename(&staged, to).expect("rename");
    }
}

/// Waits until a new connection is served `expected`.
fn wait_until_served(address: &str, config: &Arc<rustls::ClientConfig>, expected: &CertificateDer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connection = Connection::open(address, config.clone()).expect("handshake");
        if connection.served() == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the expected certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tls_section(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn https_only_with_certificates_that_follow_their_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "fleet-ca");
    let (first, renewed, other) = (
        ca.issue("first", "IP:127.0.0.1"),
        ca.issue("renewed", "IP:127.0.0.1"),
        ca.issue("other", "IP:127.0.0.1"),
    );
    let live = Issued {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
    };
    install(&first, &live);
    let ops = key("ops-1");
    let base = config_text(dir.path(), &ops, "listen = \"127.0.0.1:0\"\n", None);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("{base}{}", tls_section(&live.cert, &live.key)),
    )
    .expect("config");
    let mut daemon = Running::start(&config);
    let address = daemon.address.clone();
    let pid = daemon.pid();
    let trusting = client(&[certificate(&ca.cert())]);

    // A client that trusts the CA: answers, over the first certificate.
    let mut kept = Connection::open(&address, trusting.clone()).expect("handshake");
    assert_eq!(kept.served(), certificate(&first.cert));
    assert_eq!(kept.get("/healthz"), (200, "ok\n".to_owned()));
    let (status, body) = kept.get("/v1/status");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"hostname\":\"sambirano\""), "{body}");

    // One that does not trust it is refused.
    let stranger = client(&[certificate(&TestCa::new(dir.path(), "other-ca").cert())]);
    match Connection::open(&address, stranger) {
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {}
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a client that does not trust the CA got through"),
    }

    // Plain HTTP: no HTTP answer, the connection closed at once.
    let mut plain = TcpStream::connect(&address).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let read = plain.read_to_end(&mut answer);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection stayed open: {read:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/"),
        "{answer:?}"
    );

    // Renewed on disk: the next connection gets the new pair; the one
    // already open goes on.
    install(&renewed, &live);
    wait_until_served(&address, &trusting, &certificate(&renewed.cert));
    assert_eq!(kept.get("/healthz"), (200, "ok\n".to_owned()));
    daemon.wait_for_log(&["loaded the changed TLS certificate", "live.crt"]);

    // Half a renewal (a certificate without its key): refused, logged, the
    // renewed pair kept.
    std::fs::copy(&other.cert, &live.cert).expect("copy");
    let connection = Connection::open(&address, trusting.clone()).expect("handshake");
    assert_eq!(connection.served(), certificate(&renewed.cert));
    daemon.wait_for_log(&["still serving the previous one", "is not the private key"]);
    // The key follows: the other pair.
    std::fs::copy(&other.key, &live.key).expect("copy");
    wait_until_served(&address, &trusting, &certificate(&other.cert));

    // SIGHUP with new paths: the first pair, from its own files.
    std::fs::write(
        &config,
        format!("{base}{}", tls_section(&first.cert, &first.key)),
    )
    .expect("config");
    daemon.hang_up();
    wait_until_served(&address, &trusting, &certificate(&first.cert));

    // SIGHUP with a pair that does not load: the config is refused whole.
    std::fs::write(
        &config,
        format!("{base}{}", tls_section(&first.cert, &renewed.key)),
    )
    .expect("config");
    daemon.hang_up();
    daemon.wait_for_log(&[
        "refused the changed",
        "[tls]: key_file",
        "is not the private key",
    ]);
    let connection = Connection::open(&address, trusting.clone()).expect("handshake");
    assert_eq!(connection.served(), certificate(&first.cert));

    // [tls] removed: HTTPS stays until a restart, which a warning names.
    std::fs::write(&config, &base).expect("config");
    daemon.hang_up();
    daemon.wait_for_log(&["[tls] changed in", "takes effect when deployd restarts"]);
    let mut connection = Connection::open(&address, trusting.clone()).expect("handshake");
    assert_eq!(connection.get("/healthz"), (200, "ok\n".to_owned()));
    assert!(daemon.is_running());
    assert_eq!(daemon.pid(), pid);
    let logged = daemon.lines.lock().expect("lines").join("\n");
    for secret in [&first.key, &renewed.key, &other.key] {
        let text = std::fs::read_to_string(secret).expect("key");
        for line in text.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!logged.contains(line), "key material in the log");
        }
    }
}
