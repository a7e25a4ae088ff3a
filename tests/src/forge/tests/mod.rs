//! The stand-in against a small hook receiver and the real `git`, on
//! loopback only: each forge's hooks (headers, signature, body) for a push,
//! a tag, a deletion and its test delivery ([`hooks`]); the status APIs
//! ([`status_api`]); git over HTTP with a push that sends the hook
//! ([`git_http`]). This file holds the receiver and the shared setup.

mod git_http;
mod hooks;
mod status_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sign::hmac_sha256_hex;
use super::{ForgeKind, ForgeOptions, ForgeStandIn};
use crate::run::{run, stdout_text};

const SECRET: &str = "hook-secret";
const TOKEN: &str = "api-token";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A hook receiver answering 202 to everything; stops on drop.
struct Receiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (log, stop) = (Arc::clone(&received), Arc::clone(&stopping));
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = read_request(stream, &log);
                }
            }
        });
        Receiver {
            address,
            received,
            stopping,
            thread: Some(thread),
        }
    }

    fn url(&self, kind: ForgeKind) -> String {
        format!("http://{}/v1/hooks/{kind}", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits until `count` requests have arrived.
    fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, logs it, then answers 202 (logged first, so a test
/// that has the answer sees the request).
fn read_request(stream: TcpStream, log: &Mutex<Vec<Received>>) -> Option<()> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    log.lock().expect("log").push(Received {
        path,
        headers,
        body,
    });
    let answer = "HTTP/1.1 202 Accepted\r\nContent-Length: 8\r\nConnection: close\r\n\r\naccepted";
    writer.write_all(answer.as_bytes()).ok()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Mira Okafor",
            "-c",
            "user.email=mira@example.org",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args))
    .expect("git");
    stdout_text(&output)
}

/// A work tree on `main` with two commits; the second's id.
fn repository(dir: &Path) -> (PathBuf, String, String) {
    let path = dir.join("fleet");
    std::fs::create_dir_all(path.join("hosts")).expect("mkdir");
    git(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("flake.nix"), "{ }\n").expect("write");
    git(&path, &["add", "."]);
    git(&path, &["commit", "-q", "-m", "The fleet"]);
    let first = git(&path, &["rev-parse", "HEAD"]);
    std::fs::write(path.join("hosts/sambirano.nix"), "{ }\n").expect("write");
    git(&path, &["add", "."]);
    git(
        &path,
        &["commit", "-q", "-m", "sambirano: a host\n\nWith a body."],
    );
    let second = git(&path, &["rev-parse", "HEAD"]);
    (path, first, second)
}

struct Setup {
    _dir: tempfile::TempDir,
    repository: PathBuf,
    first: String,
    second: String,
    receiver: Receiver,
    forge: ForgeStandIn,
}

fn setup(kind: ForgeKind) -> Setup {
    setup_with(kind, None)
}

/// Like [`setup`], serving HTTPS with `tls` (the API then only there).
fn setup_with(kind: ForgeKind, tls: Option<crate::tls::ServerIdentity>) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let (repository, first, second) = repository(dir.path());
    let receiver = Receiver::start();
    let forge = ForgeStandIn::start(ForgeOptions {
        kind,
        repository: repository.clone(),
        owner_repo: "ops/fleet".to_owned(),
        webhook_url: receiver.url(kind),
        secret: SECRET.to_owned(),
        token: TOKEN.to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
        tls,
    })
    .expect("start");
    Setup {
        _dir: dir,
        repository,
        first,
        second,
        receiver,
        forge,
    }
}

/// Checks the signature or token the forge puts on `request`.
fn assert_signed(kind: ForgeKind, request: &Received) {
    let hmac = hmac_sha256_hex(SECRET.as_bytes(), &request.body);
    let header = |name| request.header(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(header("Content-Type"), "application/json");
    match kind {
        ForgeKind::GitHub => {
            assert_eq!(header("X-Hub-Signature-256"), format!("sha256={hmac}"));
            assert!(header("User-Agent").starts_with("GitHub-Hookshot/"));
            assert_eq!(header("X-GitHub-Delivery").len(), 36);
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            assert_eq!(header("X-Gitea-Signature"), hmac);
            assert_eq!(header("X-Hub-Signature-256"), format!("sha256={hmac}"));
            assert_eq!(header("X-GitHub-Event"), header("X-Gitea-Event"));
            assert_eq!(header("X-GitHub-Delivery"), header("X-Gitea-Delivery"));
            if kind == ForgeKind::Forgejo {
                assert_eq!(header("X-Forgejo-Signature"), hmac);
                assert_eq!(header("X-Forgejo-Event"), header("X-Gitea-Event"));
                assert_eq!(header("X-Forgejo-Delivery"), header("X-Gitea-Delivery"));
            } else {
                assert!(request.header("X-Forgejo-Event").is_none());
            }
        }
        ForgeKind::GitLab => {
            assert_eq!(header("X-Gitlab-Token"), SECRET);
            assert!(header("User-Agent").starts_with("GitLab/"));
            assert_eq!(header("Idempotency-Key").len(), 36);
            assert!(request.header("X-Gitlab-Event-UUID").is_some());
        }
    }
}

fn event_of(kind: ForgeKind, request: &Received) -> String {
    request
        .header(kind.event_header())
        .unwrap_or_default()
        .to_owned()
}
