//! A stand-in for push serve's channel (`/v1/channel`), for the tests of
//! pulling hosts: it follows the contract in docs/src/design/channels.md
//! ("push serve's channel API"), not push serve's code, which lives in
//! push/. It serves a folder's `hosts/<host>.json` with the header
//! `Deployd-Channel: push-serve`, holds `?after=N&wait=S` until the state's
//! sequence is above `N` (else `304`), and takes `POST reports/<host>` only
//! when [`HostReport::verify`] accepts it with the key pinned for the host
//! (the protocol crate's real check), keeping every verified report.
//!
//! What it does not do, unlike push serve: TLS, `PUT` (publishing is
//! writing the folder), more than one pinned host, keeping only the newest
//! report, its own error bodies' codes beyond the status.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use deployd_protocol::{HostName, HostReport, PublicKey, MAX_ENVELOPE_BYTES};

/// What the receiver was told and has taken.
#[derive(Default)]
struct Shared {
    /// The host key pinned per host.
    pinned: BTreeMap<String, PublicKey>,
    /// The reports that verified, in arrival order.
    reports: Vec<HostReport>,
    /// How many reports were refused.
    refused: usize,
}

/// A running channel receiver; it stops with the test process.
#[derive(Clone)]
pub struct ChannelReceiver {
    folder: PathBuf,
    address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl ChannelReceiver {
    /// Serves `folder` on `listen` (port 0: any), from a thread.
    pub fn start(folder: &Path, listen: SocketAddr) -> Result<ChannelReceiver> {
        let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let receiver = ChannelReceiver {
            folder: folder.to_owned(),
            address: listener.local_addr()?,
            shared: Arc::default(),
        };
        let serving = receiver.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let serving = serving.clone();
                thread::spawn(move || {
                    let _ = serving.answer(stream);
                });
            }
        });
        Ok(receiver)
    }

    /// The channel's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Pins `key` as `host`'s host key.
    pub fn pin(&self, host: &str, key: PublicKey) {
        self.lock().pinned.insert(host.to_owned(), key);
    }

    /// The reports that verified so far.
    pub fn reports(&self) -> Vec<HostReport> {
        self.lock().reports.clone()
    }

    /// How many reports were refused.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn answer(&self, mut stream: TcpStream) -> Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? <= 2 {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut words = request_line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (status, body) = match (method, path.strip_prefix('/')) {
            ("GET", Some(file)) if file.starts_with("hosts/") && !file.contains("..") => {
                self.held_state(file, query)
            }
            ("POST", Some(report)) if report.starts_with("reports/") => {
                if length > MAX_ENVELOPE_BYTES {
                    ("413 Payload Too Large", Vec::new())
                } else {
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body)?;
                    self.take_report(&report["reports/".len()..], &body)
                }
            }
            _ => ("404 Not Found", Vec::new()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nDeployd-Channel: push-serve\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        Ok(stream.flush()?)
    }

    /// `GET hosts/<host>.json[?after=N&wait=S]`.
    fn held_state(&self, file: &str, query: &str) -> (&'static str, Vec<u8>) {
        let mut after = None;
        let mut wait = 0u64;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("after", n)) => after = n.parse::<u64>().ok(),
                Some(("wait", s)) => wait = s.parse::<u64>().unwrap_or(0).min(60),
                _ => {}
            }
        }
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            let held = std::fs::read(self.folder.join(file)).ok();
            match (&held, after) {
                (None, None) => return ("404 Not Found", Vec::new()),
                (Some(bytes), _) if after.is_none_or(|n| sequence_of(bytes) > n) => {
                    return ("200 OK", bytes.clone())
                }
                _ if Instant::now() >= deadline => {
                    return match (held, after) {
                        (None, _) => ("404 Not Found", Vec::new()),
                        _ => ("304 Not Modified", Vec::new()),
                    }
                }
                _ => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `POST reports/<host>`: verified with the pinned key, or refused.
    fn take_report(&self, host: &str, body: &[u8]) -> (&'static str, Vec<u8>) {
        let mut shared = self.lock();
        let (Ok(name), Some(key)) = (host.parse::<HostName>(), shared.pinned.get(host)) else {
            shared.refused += 1;
            return ("404 Not Found", Vec::new());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        match HostReport::verify(body, &name, key, now) {
            Ok(report) => {
                shared.reports.push(report);
                ("204 No Content", Vec::new())
            }
            Err(error) => {
                shared.refused += 1;
                ("403 Forbidden", error.to_string().into_bytes())
            }
        }
    }
}

/// The sequence in a desired state's payload (0 when unreadable): only to
/// answer a long poll, as push serve reads the state it holds.
fn sequence_of(bytes: &[u8]) -> u64 {
    deployd_protocol::Envelope::parse(bytes)
        .ok()
        .and_then(|envelope| serde_json::from_slice::<serde_json::Value>(envelope.payload()).ok())
        .and_then(|payload| payload["sequence"].as_u64())
        .unwrap_or(0)
}
