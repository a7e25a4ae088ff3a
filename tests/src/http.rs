//! A small static file server for the builder's binary cache (`lab
//! serve-cache`): GET and HEAD of files under one directory, nothing else.
//! It listens only on the lab's addresses. It can also be slowed down: its
//! bodies paced to a bandwidth (so a test can stop the cache in the middle
//! of a download), and every answer delayed by a latency per request (this
//! kernel has no `netem`, so a network's round trips are played here).
//! With a certificate it serves HTTPS instead (rustls), as a cache behind
//! a TLS front does. And it can fail: the first K answers for NAR files
//! (`/nar/...`) cut after half their body, the connection closed, as a
//! flaky link or proxy does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::tls::Connection;

/// Longest request head read.
const MAX_HEAD_BYTES: u64 = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How fast the server answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Bytes per second for each body; `None` sends as fast as it can.
    pub bytes_per_second: Option<u64>,
    /// How long each request waits before it is answered (zero: not at
    /// all), as a request crossing a slow network would.
    pub latency_per_request: Duration,
    /// How many of the first answers for NAR files are cut after half
    /// their body (the connection closed).
    pub cut_first_nars: u32,
}

/// Serves files under `root` on `listener` until the process ends, over
/// HTTPS when `tls` is given.
pub fn serve(
    root: &Path,
    listener: TcpListener,
    pace: Pace,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let nars_to_cut = Arc::new(AtomicU32::new(pace.cut_first_nars));
    for stream in listener.incoming() {
        let stream = stream.context("accepting a connection")?;
        let root = root.to_owned();
        let tls = tls.clone();
        let nars_to_cut = nars_to_cut.clone();
        thread::spawn(move || {
            let _ = answer(&root, stream, pace, tls.as_ref(), &nars_to_cut);
        });
    }
    Ok(())
}

fn answer(
    root: &Path,
    stream: TcpStream,
    pace: Pace,
    tls: Option<&Arc<rustls::ServerConfig>>,
    nars_to_cut: &AtomicU32,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut connection = match tls {
        None => Connection::Plain(stream),
        Some(config) => Connection::Tls(Box::new(
            crate::tls::accept(config, stream).map_err(std::io::Error::other)?,
        )),
    };
    let (method, target) = {
        let mut reader = BufReader::new((&mut connection).take(MAX_HEAD_BYTES));
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        // Skip the headers; nothing in them matters here.
        let mut header = String::new();
        while reader.read_line(&mut header)? > 2 {
            header.clear();
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        (method, words.next().unwrap_or("").to_owned())
    };
    if !pace.latency_per_request.is_zero() {
        thread::sleep(pace.latency_per_request);
    }
    // One of the first NAR answers is cut: taken from the count, once.
    let cut = target.starts_with("/nar/")
        && nars_to_cut
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
    respond_with_file(root, &mut connection, (&method, &target), pace, cut)?;
    connection.finish();
    Ok(())
}

fn respond_with_file(
    root: &Path,
    stream: &mut impl Write,
    (method, target): (&str, &str),
    pace: Pace,
    cut: bool,
) -> std::io::Result<()> {
    if method != "GET" && method != "HEAD" {
        return respond(stream, "405 Method Not Allowed", None);
    }
    let Some(path) = resolve(root, target) else {
        return respond(stream, "404 Not Found", None);
    };
    match std::fs::read(&path) {
        Ok(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            if method == "GET" && cut {
                // Half the body, then the connection is closed.
                send_body(stream, &body[..body.len() / 2], pace)?;
                stream.flush()?;
                return Err(std::io::Error::other("cut on purpose"));
            }
            if method == "GET" {
                send_body(stream, &body, pace)?;
            }
            stream.flush()
        }
        Err(_) => respond(stream, "404 Not Found", None),
    }
}

fn send_body(stream: &mut impl Write, body: &[u8], pace: Pace) -> std::io::Result<()> {
    let Some(rate) = pace.bytes_per_second else {
        return stream.write_all(body);
    };
    // Ten slices a second at the given rate.
    let slice = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
    for chunk in body.chunks(slice) {
        stream.write_all(chunk)?;
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn respond(stream: &mut impl Write, status: &str, body: Option<&str>) -> std::io::Result<()> {
    let body = body.unwrap_or("");
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes())
}

/// Maps a request target to a file under `root`; `None` for anything that
/// tries to leave it.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let relative = path.strip_prefix('/')?;
    let safe = relative
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'));
    safe.then(|| root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cannot_leave_the_root() {
        let root = Path::new("/cache");
        assert_eq!(
            resolve(root, "/nix-cache-info"),
            Some(PathBuf::from("/cache/nix-cache-info"))
        );
        assert_eq!(
            resolve(root, "/nar/x.nar.xz?y=1"),
            Some(PathBuf::from("/cache/nar/x.nar.xz"))
        );
        for bad in [
            "/../etc/passwd",
            "/nar/../../x",
            "relative",
            "/a//b",
            "/",
            "/./x",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad}");
        }
    }

    /// Starts a server on a temporary directory holding `nix-cache-info`;
    /// returns a function that GETs a path and answers the whole response.
    fn server(pace: Pace) -> (tempfile::TempDir, impl Fn(&str) -> String) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("nix-cache-info"), "StoreDir: /nix/store\n").expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let root = dir.path().to_owned();
        thread::spawn(move || serve(&root, listener, pace, None));
        let get = move |path: &str| {
            let mut stream = TcpStream::connect(address).expect("connect");
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            answer
        };
        (dir, get)
    }

    #[test]
    fn serves_files_and_404s() {
        let (_dir, get) = server(Pace::default());
        let found = get("/nix-cache-info");
        assert!(found.starts_with("HTTP/1.1 200 OK"), "{found}");
        assert!(found.ends_with("StoreDir: /nix/store\n"), "{found}");
        assert!(get("/missing.narinfo").starts_with("HTTP/1.1 404"));
        assert!(get("/../etc/passwd").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn every_request_waits_the_latency() {
        let latency = Duration::from_millis(150);
        let (_dir, get) = server(Pace {
            latency_per_request: latency,
            ..Pace::default()
        });
        for path in ["/nix-cache-info", "/missing.narinfo"] {
            let started = std::time::Instant::now();
            let answer = get(path);
            assert!(started.elapsed() >= latency, "{path} answered at once");
            assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        }
    }

    #[test]
    fn cuts_the_first_nars_after_half_their_body() {
        let (dir, get) = server(Pace {
            cut_first_nars: 2,
            ..Pace::default()
        });
        std::fs::create_dir(dir.path().join("nar")).expect("nar dir");
        std::fs::write(dir.path().join("nar/a.nar"), "0123456789").expect("write");
        for _ in 0..2 {
            let cut = get("/nar/a.nar");
            assert!(cut.starts_with("HTTP/1.1 200 OK"), "{cut}");
            assert!(cut.ends_with("\r\n\r\n01234"), "{cut}");
        }
        assert!(get("/nar/a.nar").ends_with("\r\n\r\n0123456789"));
        // Other files are never cut.
        assert!(get("/nix-cache-info").ends_with("StoreDir: /nix/store\n"));
    }
}
