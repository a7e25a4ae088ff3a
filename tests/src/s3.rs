//! A real S3-compatible server for the lab's tests of `push publish
//! --channel s3://...`: moto's `moto_server` (PyPI's moto[server], pinned
//! and installed by `scripts/moto --install`, which scripts/install-deps
//! runs), listening on loopback, or on the lab's bridge where the lab's
//! hosts reach it (`Slot::gateway`). It accepts any credentials and serves
//! objects to anonymous GETs, as a bucket behind a website endpoint does
//! for the hosts. Stopped by its pid when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long moto may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server.
pub struct S3Server {
    child: Child,
    address: SocketAddr,
}

impl S3Server {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<S3Server> {
        S3Server::start_on(Ipv4Addr::LOCALHOST)
    }

    /// Starts moto on a free port of `ip` (an address of this namespace)
    /// and waits until it answers.
    pub fn start_on(ip: Ipv4Addr) -> Result<S3Server> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/moto");
        // A free port: taken, then given back for moto to bind.
        let address = TcpListener::bind((ip, 0))?.local_addr()?;
        let child = Command::new(&script)
            .args(["-H", &ip.to_string(), "-p", &address.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let mut server = S3Server { child, address };
        let started = Instant::now();
        loop {
            if server.request("GET", "/", "").is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("moto exited with {status} (is it installed? scripts/moto --install)");
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("moto did not answer on {address} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its endpoint: `http://IP:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Creates the bucket `name`, readable by anyone (`public-read`: moto
    /// then serves its objects to anonymous GETs, as a real bucket does
    /// with a read policy behind a website endpoint).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let (status, body) =
            self.request("PUT", &format!("/{name}"), "x-amz-acl: public-read\r\n")?;
        if status != 200 {
            bail!(
                "creating the bucket {name}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// An object, read anonymously as a host reads a channel: `None` when
    /// there is none (404).
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.request("GET", &format!("/{bucket}/{key}"), "")? {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (status, body) => bail!(
                "GET {bucket}/{key}: {status} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// One plain HTTP/1.1 request without a body, with `headers` (each
    /// ending in CRLF); the status and the body.
    fn request(&self, method: &str, path: &str, headers: &str) -> Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.address,
        )?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let split = answer
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .context("an answer without headers")?;
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("an answer without a status")?;
        let mut body = answer[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body)?;
        }
        Ok((status, body))
    }
}

/// A chunked body's bytes.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .context("a chunk without a size line")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("a bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("a short chunk")?);
        body = body.get(size + 2..).context("a short chunk")?;
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
