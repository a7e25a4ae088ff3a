//! HTTPS for everything push talks to: hosts, caches and the forge. One
//! TLS stack, rustls (with the ring provider), trusting the system's roots
//! (as OpenSSL finds them: `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the
//! distribution's bundle) plus the CA files push.toml or push serve's
//! config name ([`Trust`]). A request that fails is told in one line that
//! names the server and what went wrong ([`describe`]): a certificate that
//! does not verify says so, and which check it failed.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Why a CA file or an HTTPS client cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read.
    #[error("cannot read the CA file {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The CA file is not a PEM bundle.
    #[error("the CA file {} is not PEM", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate.
    #[error("the CA file {} holds no certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot be a trust anchor.
    #[error("the CA file {} holds a certificate that is not a valid CA", .path.display())]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: rustls::Error,
    },
    /// The HTTP client cannot be built (no usable system roots, say).
    #[error("cannot set up the HTTPS client")]
    Client(#[source] reqwest::Error),
}

/// A PEM bundle of CA certificates, read and checked once.
#[derive(Debug)]
pub struct CaFile {
    path: PathBuf,
    certificates: Vec<CertificateDer<'static>>,
}

impl CaFile {
    /// Reads `path`: one or more PEM certificates, each usable as a trust
    /// anchor (anything else in the file, a key say, is skipped).
    pub fn load(path: &Path) -> Result<CaFile, TlsError> {
        let bytes = std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.to_owned(),
            error,
        })?;
        let certificates = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Pem {
                path: path.to_owned(),
                error,
            })?;
        if certificates.is_empty() {
            return Err(TlsError::Empty {
                path: path.to_owned(),
            });
        }
        // What reqwest does with them later, done now: a bad file is a bad
        // config, told before anything is sent.
        let mut anchors = rustls::RootCertStore::empty();
        for certificate in &certificates {
            anchors
                .add(certificate.clone())
                .map_err(|error| TlsError::Anchor {
                    path: path.to_owned(),
                    error,
                })?;
        }
        Ok(CaFile {
            path: path.to_owned(),
            certificates,
        })
    }
}

/// The certificate authorities trusted for one server: the system's roots
/// plus these CA files. Two trusts are the same when they name the same files.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    ca_files: Vec<Arc<CaFile>>,
}

impl PartialEq for Trust {
    fn eq(&self, other: &Trust) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Trust {}

impl Trust {
    /// The system's roots and, if given, `ca_file`.
    pub fn with(ca_file: Option<&Arc<CaFile>>) -> Trust {
        Trust::default().and(ca_file)
    }

    /// This trust and, if given and not there yet, `ca_file`.
    pub fn and(mut self, ca_file: Option<&Arc<CaFile>>) -> Trust {
        if let Some(ca_file) = ca_file {
            if !self.ca_files.iter().any(|known| known.path == ca_file.path) {
                self.ca_files.push(ca_file.clone());
            }
        }
        self
    }

    /// The CA files' paths, in order: what tells two trusts apart.
    fn key(&self) -> Vec<PathBuf> {
        self.ca_files.iter().map(|file| file.path.clone()).collect()
    }

    /// A client builder that speaks HTTPS with rustls and trusts exactly
    /// this; the caller adds its own timeouts and policies.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_native_certs(true);
        for file in &self.ca_files {
            for certificate in &file.certificates {
                // Checked by `CaFile::load`; DER is stored as is.
                if let Ok(certificate) = reqwest::Certificate::from_der(certificate) {
                    builder = builder.add_root_certificate(certificate);
                }
            }
        }
        builder
    }
}

/// Clients by trust, made on first use: one per set of CA files, each
/// keeping its connections.
pub struct Clients {
    /// How each client is set up besides its trust.
    setup: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    /// The clients made so far (few: one per distinct `ca_file`).
    made: Mutex<BTreeMap<Vec<PathBuf>, reqwest::Client>>,
}

impl Clients {
    /// Clients set up by `setup` (timeouts, pooling, redirects).
    pub fn new(setup: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> Clients {
        Clients {
            setup,
            made: Mutex::default(),
        }
    }

    /// The client for `trust`; with `https_only`, one that refuses any
    /// `http://` URL, redirects included.
    pub fn get(&self, trust: &Trust, https_only: bool) -> Result<reqwest::Client, TlsError> {
        let mut key = trust.key();
        if https_only {
            // A path cannot be empty: this marks the HTTPS-only variant.
            key.push(PathBuf::new());
        }
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = made.get(&key) {
            return Ok(client.clone());
        }
        let client = (self.setup)(trust.builder())
            .https_only(https_only)
            .build()
            .map_err(TlsError::Client)?;
        made.insert(key, client.clone());
        Ok(client)
    }
}

/// One line for a request that got no answer, naming the server: for a
/// certificate that does not verify, which check it failed; for a TLS
/// handshake that failed, why; else the innermost cause (connection
/// refused, no route, a name that does not resolve, a timeout).
pub fn describe(error: &reqwest::Error) -> String {
    let server = error
        .url()
        .and_then(|url| url.host_str())
        .unwrap_or("the server");
    format!("{server}: {}", problem(error))
}

/// What [`describe`] says after the server's name, for a message that
/// names the server already.
pub fn problem(error: &reqwest::Error) -> String {
    if let Some(tls) = tls_problem(error) {
        return tls;
    }
    if error.is_timeout() {
        return "no answer in time".to_owned();
    }
    let innermost = causes(error)
        .last()
        .map_or_else(|| error.to_string(), ToString::to_string);
    if error.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        innermost
    }
}

/// What went wrong with TLS, when that is why `error` got no answer: the
/// certificate check that failed, or why the handshake did.
pub fn tls_problem(error: &reqwest::Error) -> Option<String> {
    let tls = causes(error).find_map(|cause| cause.downcast_ref::<rustls::Error>())?;
    Some(match tls {
        rustls::Error::InvalidCertificate(problem) => certificate_problem(problem),
        // What plain HTTP looks like to a TLS client.
        rustls::Error::InvalidMessage(_) => {
            format!("the TLS handshake failed ({tls}): does it serve HTTPS on that port?")
        }
        other => format!("the TLS handshake failed ({other})"),
    })
}

/// Whether `error` is a certificate push does not trust (which no retry
/// will change).
pub fn certificate_refused(error: &reqwest::Error) -> bool {
    causes(error).any(|cause| {
        matches!(
            cause.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    })
}

/// `error` and its causes on one line, joined by ": ".
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    causes(error)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// What the certificate check said, for people: which check failed in
/// words, then rustls' name for it (what its documentation and issues use).
fn certificate_problem(problem: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Problem;
    match problem {
        Problem::UnknownIssuer => "certificate not trusted (UnknownIssuer): is it signed by a CA \
                                   in the system's roots or ca_file?"
            .to_owned(),
        Problem::NotValidForName | Problem::NotValidForNameContext { .. } => {
            format!("certificate name mismatch (NotValidForName): {problem}")
        }
        Problem::Expired | Problem::ExpiredContext { .. } => {
            format!("certificate expired (Expired): {problem}")
        }
        Problem::NotValidYet | Problem::NotValidYetContext { .. } => {
            format!("certificate not valid yet (NotValidYet): {problem}")
        }
        other => format!("certificate refused ({other})"),
    }
}

/// `error` and its causes, outermost first. An `io::Error`'s own
/// `source()` skips the error it wraps (a rustls error, in a handshake),
/// so that one is taken from `get_ref()`.
pub fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&current: &&'a (dyn StdError + 'static)| {
        match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        }
    })
}

/// The body of `response`, refused once it is longer than `limit` bytes
/// (an answer is read whole into memory: its sender does not choose how
/// much).
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| anyhow::anyhow!("{}", problem(&error)))?
    {
        if body.len() + chunk.len() > limit {
            anyhow::bail!("the answer is longer than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test CA (see `tests/fixtures/tls/README.md`).
    const CA: &str = include_str!("../tests/fixtures/tls/ca.pem");

    #[test]
    fn ca_files_are_checked_when_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = CaFile::load(&dir.path().join("none.pem")).expect_err("missing");
        assert!(matches!(missing, TlsError::Read { .. }), "{missing}");

        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let empty = CaFile::load(&key_only).expect_err("no certificate");
        assert!(
            empty.to_string().contains("holds no certificate"),
            "{empty}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let bad = CaFile::load(&garbage).expect_err("not a certificate");
        assert!(matches!(bad, TlsError::Anchor { .. }), "{bad}");
    }

    #[test]
    fn trusts_are_told_apart_by_their_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, CA).expect("write");
        let ca = Arc::new(CaFile::load(&path).expect("the test CA loads"));
        let system = Trust::with(None);
        let fleet = Trust::with(Some(&ca));
        assert_ne!(system, fleet);
        assert_eq!(fleet.clone().and(Some(&ca)), fleet);
        assert_eq!(fleet.ca_files.len(), 1);

        let clients = Clients::new(|builder| builder);
        let plain = clients.get(&fleet, false).expect("client");
        let strict = clients.get(&fleet, true).expect("client");
        assert_eq!(clients.made.lock().expect("lock").len(), 2);
        drop((plain, strict));
        clients.get(&fleet, true).expect("client");
        assert_eq!(clients.made.lock().expect("lock").len(), 2, "made once");
    }

    #[tokio::test]
    async fn an_https_only_client_refuses_plain_http() {
        let clients = Clients::new(|builder| builder);
        let client = clients.get(&Trust::default(), true).expect("client");
        let error = client
            .get("http://127.0.0.1:9/")
            .send()
            .await
            .expect_err("refused before connecting");
        assert!(
            error.is_builder(),
            "refused as a bad URL, not tried: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_one_line_naming_the_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let error = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .send()
            .await
            .expect_err("nothing listens");
        let line = describe(&error);
        assert!(line.starts_with("127.0.0.1: cannot connect: "), "{line}");
        assert!(!line.contains("error sending request"), "{line}");
        assert!(!certificate_refused(&error));
    }

    #[test]
    fn each_certificate_check_is_told_in_its_own_words() {
        use rustls::CertificateError as Problem;
        // (A host with the untrusted test CA: tests/tls_hosts.rs.)
        assert!(certificate_problem(&Problem::UnknownIssuer)
            .starts_with("certificate not trusted (UnknownIssuer): "));
        assert!(certificate_problem(&Problem::NotValidForName)
            .starts_with("certificate name mismatch (NotValidForName): "));
        assert!(
            certificate_problem(&Problem::Expired).starts_with("certificate expired (Expired): ")
        );
        assert!(certificate_problem(&Problem::NotValidYet)
            .starts_with("certificate not valid yet (NotValidYet): "));
        assert!(certificate_problem(&Problem::Revoked).starts_with("certificate refused ("));
    }
}
