//! TLS in front of the forge stand-in, for `https://` fetches: `socat`
//! terminates TLS with a certificate that `openssl` makes for 127.0.0.1,
//! and passes each connection on to the stand-in's plain HTTP port. A client
//! trusts it only when told to (`SSL_CERT_FILE`), as it would a private CA.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lab::wait_for_port;
use crate::run::run;

/// `socat` terminating TLS for the stand-in; stopped (its process group) on drop.
pub struct TlsFront {
    child: Child,
    address: SocketAddr,
    certificate: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// Listens on a free loopback port and forwards to `backend`.
    pub fn start(backend: SocketAddr) -> Result<TlsFront> {
        let dir = tempfile::tempdir()?;
        let (key, certificate) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&certificate))
        .context("making the TLS certificate with openssl")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            certificate.display(),
            key.display()
        );
        let child = Command::new("socat")
            .arg(listen)
            .arg(format!("TCP:{backend}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting socat (scripts/install-deps installs it)")?;
        let front = TlsFront {
            child,
            address,
            certificate,
            _dir: dir,
        };
        wait_for_port(address, Duration::from_secs(10))?;
        Ok(front)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The certificate a client must trust.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        // socat forks a child per connection, all in its process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}
