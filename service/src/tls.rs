//! HTTPS for deployd's services: a certificate chain and its private key,
//! read from PEM files (the key as PKCS#8, PKCS#1 RSA or SEC1 EC) and kept
//! current without a restart. ACME clients and secret managers rewrite the
//! files in place or swap them by rename, so [`ReloadingCertificate`] looks
//! at both files' identity (device, inode, size, modification and change
//! times) on every handshake, a `stat` each, and loads the pair again when
//! it changed; [`ReloadingCertificate::use_files`] re-reads at once (SIGHUP).
//! A pair that fails to load is logged and the old one kept: a renewal that
//! has written the new certificate but not yet its key (a mismatch for a
//! moment) goes on serving the old pair until the key arrives.
//!
//! The crypto provider is rustls' *ring*, named here rather than left to
//! the process default, so that the tree holds one provider.
//! Key material never reaches a log or an error: errors name the file.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate chain and private key files of a TLS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM certificates, the server's first, then its intermediates.
    pub cert_file: PathBuf,
    /// The PEM private key of the first certificate.
    pub key_file: PathBuf,
}

/// Why a certificate or key file cannot be used. Each names its file;
/// none shows what the file holds.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    /// The file cannot be read.
    #[error("cannot read {setting} {path}")]
    Read {
        /// `cert_file`, `key_file` or `ca_file`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM certificate, or a malformed one.
    #[error("{setting} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// `cert_file` or `ca_file`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM parser's complaint.
        #[source]
        source: pem::Error,
    },
    /// The key file holds no PEM private key, or a malformed one.
    #[error("key_file {path} holds no PEM private key (PKCS#8, RSA or EC)")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The PEM parser's complaint.
        #[source]
        source: pem::Error,
    },
    /// The private key is not one the crypto provider can sign with.
    #[error("key_file {path}: the private key cannot be used")]
    Key {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The (first) certificate does not parse as X.509.
    #[error("cert_file {path}: the certificate does not parse")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The key is not the one the certificate certifies.
    #[error("key_file {key} is not the private key of the certificate in cert_file {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The crypto provider of every TLS server and client of deployd: *ring*.
///
/// rustls 0.23.48 marks it deprecated because *ring* has no post-quantum
/// key exchange (rustls' own default, aws-lc-rs, has). It is still the one
/// provider of this tree: reqwest's rustls features (push's client) bring
/// *ring* and no other, a second provider would make rustls' process-wide
/// default ambiguous, and *ring* builds with a C compiler alone. Moving to
/// aws-lc-rs is this function and the workspace's rustls features.
#[expect(deprecated, reason = "ring is the tree's one provider; see above")]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM certificates in `path` (at least one); `setting` names the file
/// in errors (`cert_file`, `ca_file`).
pub fn read_certificates(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsFilesError> {
    let bytes = std::fs::read(path).map_err(|source| TlsFilesError::Read {
        setting,
        path: path.to_owned(),
        source,
    })?;
    let no_certificate = |source| TlsFilesError::NoCertificate {
        setting,
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(no_certificate)?;
    if certificates.is_empty() {
        return Err(no_certificate(pem::Error::NoItemsFound));
    }
    Ok(certificates)
}

/// Reads and checks a certificate chain and its key: the certificate
/// parses, the key parses and signs with *ring*, and it is the key the
/// certificate certifies.
pub fn load_pair(files: &CertificateFiles) -> Result<CertifiedKey, TlsFilesError> {
    let chain = read_certificates(&files.cert_file, "cert_file")?;
    let key_path = || files.key_file.clone();
    // The key's bytes are wiped once parsed (rustls keeps its own copy).
    let pem = zeroize::Zeroizing::new(std::fs::read(&files.key_file).map_err(|source| {
        TlsFilesError::Read {
            setting: "key_file",
            path: key_path(),
            source,
        }
    })?);
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsFilesError::NoKey {
        path: key_path(),
        source,
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsFilesError::Key {
            path: key_path(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot show its public half; rustls then
        // finds a mismatch at the first handshake instead.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsFilesError::Mismatch {
            cert: files.cert_file.clone(),
            key: key_path(),
        }),
        Err(source) => Err(TlsFilesError::Certificate {
            path: files.cert_file.clone(),
            source,
        }),
    }
}

/// What a file is at a moment: a file replaced by rename (another inode),
/// rewritten in place (size, times) or touched shows up as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of `path` (through symbolic links), or `None` when it
    /// cannot be looked at.
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// The stamps of both files of a pair.
    fn of_pair(files: &CertificateFiles) -> [Option<Stamp>; 2] {
        [Stamp::of(&files.cert_file), Stamp::of(&files.key_file)]
    }
}

/// The pair in use, and which files it came from.
struct Current {
    files: CertificateFiles,
    /// The files' stamps when they were last loaded, or last failed to
    /// load (so a bad pair is logged once per change, not per handshake).
    stamps: [Option<Stamp>; 2],
    key: Arc<CertifiedKey>,
}

/// A TLS server's certificate that follows its files: looked at on every
/// handshake and loaded again when either file changed; the last pair
/// that loaded is served until a new one does.
pub struct ReloadingCertificate {
    current: Mutex<Current>,
}

impl ReloadingCertificate {
    /// Loads `files`; an error when the pair cannot be used.
    pub fn load(files: CertificateFiles) -> Result<ReloadingCertificate, TlsFilesError> {
        let stamps = Stamp::of_pair(&files);
        let key = Arc::new(load_pair(&files)?);
        Ok(ReloadingCertificate {
            current: Mutex::new(Current { files, stamps, key }),
        })
    }

    /// The files in use.
    pub fn files(&self) -> CertificateFiles {
        self.lock().files.clone()
    }

    /// Loads `files` now (the same files, read again, or new ones) and
    /// serves them from the next handshake on; on error the pair and files
    /// in use stay.
    pub fn use_files(&self, files: CertificateFiles) -> Result<(), TlsFilesError> {
        let stamps = Stamp::of_pair(&files);
        let key = Arc::new(load_pair(&files)?);
        *self.lock() = Current { files, stamps, key };
        Ok(())
    }

    /// The pair to serve: loaded again first when the files changed since
    /// they were last looked at.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.lock();
        let stamps = Stamp::of_pair(&current.files);
        if stamps != current.stamps {
            current.stamps = stamps;
            match load_pair(&current.files) {
                Ok(key) => {
                    log::info!(
                        "loaded the changed TLS certificate {} and key {}",
                        current.files.cert_file.display(),
                        current.files.key_file.display()
                    );
                    current.key = Arc::new(key);
                }
                // A warning: a renewal that has written one file and not yet
                // the other gets here for a moment.
                Err(error) => log::warn!(
                    "the changed TLS certificate or key cannot be used; still serving the previous one: {}",
                    chain(&error)
                ),
            }
        }
        current.key.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // Every write replaces the whole state: a poisoned lock is usable.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("files", &self.files())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS acceptor serving `certificate`: TLS 1.2 and 1.3 with *ring*'s
/// safe defaults, no client certificates, HTTP/1.1 by ALPN.
pub fn acceptor(certificate: Arc<ReloadingCertificate>) -> Result<TlsAcceptor, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An error and its causes, `: `-separated, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests;
