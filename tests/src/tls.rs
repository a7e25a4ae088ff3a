//! Real TLS for the lab, made per test: a test CA and server certificates
//! it signs, made by `openssl` (EC P-256, as an operator's private CA or
//! ACME would give), and the rustls server side the lab's servers use (the
//! forge stand-in, the cache server). A client trusts these only when told
//! to: push's `ca_file`, git's `SSL_CERT_FILE`, Nix's `ssl-cert-file`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::run::run;

/// How long the certificates are valid: the length of any test.
const VALID_DAYS: &str = "2";

/// A certificate authority of the test's own, in a directory that goes
/// with it.
pub struct TestCa {
    dir: tempfile::TempDir,
    certificate: PathBuf,
    key: PathBuf,
}

/// A server's certificate (signed by a [`TestCa`]) and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// The certificate.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a CA named `name`.
    pub fn new(name: &str) -> Result<TestCa> {
        let dir = tempfile::tempdir()?;
        let (certificate, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        run(openssl()
            .args(["req", "-x509"])
            .args(new_key())
            .args(["-days", VALID_DAYS, "-subj", &format!("/CN={name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate))
        .context("making a test CA with openssl")?;
        Ok(TestCa {
            dir,
            certificate,
            key,
        })
    }

    /// The CA's certificate: what a client must trust.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    /// A server certificate for `addresses` (IP subject alternative names,
    /// which is how a client checks an `https://198.18.0.2:5443` URL),
    /// signed by this CA; its files are named after `name`.
    pub fn issue(&self, name: &str, addresses: &[IpAddr]) -> Result<ServerIdentity> {
        let base = self.dir.path().join(name);
        let (certificate, key, request) = (
            base.with_extension("pem"),
            base.with_extension("key"),
            base.with_extension("csr"),
        );
        let names: Vec<String> = addresses.iter().map(|ip| format!("IP:{ip}")).collect();
        let extensions = base.with_extension("ext");
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )?;
        run(openssl()
            .args(["req", "-new"])
            .args(new_key())
            .args(["-subj", &format!("/CN={name}"), "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&request))
        .with_context(|| format!("making {name}'s key with openssl"))?;
        run(openssl()
            .args(["x509", "-req", "-days", VALID_DAYS, "-in"])
            .arg(&request)
            .arg("-CA")
            .arg(&self.certificate)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(&certificate))
        .with_context(|| format!("signing {name}'s certificate with openssl"))?;
        Ok(ServerIdentity { certificate, key })
    }
}

fn openssl() -> Command {
    let mut command = Command::new("openssl");
    command.env_remove("OPENSSL_CONF");
    command
}

/// A new EC P-256 key, unencrypted.
fn new_key() -> [&'static str; 5] {
    [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ]
}

impl ServerIdentity {
    /// A rustls server config that presents this identity.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let certificates = CertificateDer::pem_file_iter(&self.certificate)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| format!("reading {}", self.certificate.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("reading {}", self.key.display()))?;
        // The provider the crate features name: ring, the tree's only one.
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .context("a server config from the certificate and key")?;
        Ok(Arc::new(config))
    }
}

/// A TLS connection a server accepted; the handshake happens on first use.
pub type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// Wraps an accepted connection in TLS with `config`.
pub fn accept(config: &Arc<rustls::ServerConfig>, stream: TcpStream) -> Result<TlsStream> {
    let connection =
        rustls::ServerConnection::new(config.clone()).context("a TLS server connection")?;
    Ok(rustls::StreamOwned::new(connection, stream))
}

/// Ends a TLS connection as a server should (close_notify), after its
/// answer: a client reading to the end sees a clean close.
pub fn finish(stream: &mut TlsStream) {
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

/// Either kind of connection a lab server takes: the same code reads and
/// answers both.
pub enum Connection {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

impl Connection {
    /// Ends it: close_notify for TLS, nothing to add for plain TCP.
    pub fn finish(&mut self) {
        if let Connection::Tls(stream) = self {
            finish(stream);
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read(buffer),
            Connection::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.write(bytes),
            Connection::Tls(stream) => stream.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Plain(stream) => stream.flush(),
            Connection::Tls(stream) => stream.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// The lab's CA and a certificate it issues make a TLS server that a
    /// client trusting the CA (and only such a client) talks to.
    #[test]
    fn a_server_certificate_from_the_test_ca_verifies_against_it_only() {
        let ca = TestCa::new("lab test CA").expect("openssl makes a CA");
        let identity = ca
            .issue("forge", &["127.0.0.1".parse().expect("ip")])
            .expect("openssl issues a certificate");
        let config = identity.server_config().expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(mut tls) = accept(&config, stream) else {
                    continue;
                };
                let mut line = String::new();
                if std::io::BufReader::new(&mut tls)
                    .read_line(&mut line)
                    .is_ok()
                {
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    finish(&mut tls);
                }
            }
        });
        let pem = std::fs::read(ca.certificate()).expect("ca");
        let trusting = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .build()
            .expect("client");
        let url = format!("https://{address}/");
        let body = trusting
            .get(&url)
            .send()
            .and_then(|answer| answer.text())
            .expect("trusted");
        assert_eq!(body, "ok");
        let other = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .build()
            .expect("client");
        let error = other.get(&url).send().expect_err("not trusted");
        assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
    }
}
