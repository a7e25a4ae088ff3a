//! A small static file server for the builder's binary cache (`lab
//! serve-cache`): GET and HEAD of files under one directory, nothing else.
//! It listens only on the lab's addresses. It can also be slowed down: its
//! bodies paced to a bandwidth (so a test can stop the cache in the middle
//! of a download), and every answer delayed by a latency per request (this
//! kernel has no `netem`, so a network's round trips are played here).
//! With a certificate it serves HTTPS instead (rustls), as a cache behind
//! a TLS front does.
//!
//! As a stand-in for a real cache behind a network (a static server such as
//! nginx in front of a `file://` cache, or harmonia), it does:
//! - persistent connections as HTTP/1.1 has them (RFC 9112, section 9.3):
//!   a connection answers request after request until the client closes
//!   it, asks `Connection: close`, speaks HTTP/1.0 without `keep-alive`,
//!   or stays idle for [`READ_TIMEOUT`]; requests sent back to back
//!   (pipelined) are answered in order;
//! - the latency on every request, a reused connection's too: the server
//!   waits that long after reading a request's head, as a request and its
//!   answer crossing a network wait one round trip, and then sends the
//!   answer at once (`TCP_NODELAY`, as nginx's `tcp_nodelay`);
//! - a thread per connection, so that many requests in flight (a client
//!   with 64 connections open) are all waiting their latency at once, not
//!   one after another; an accept that fails (too many open files) is
//!   retried, never ends the server.
//!
//! It does not: play the round trips of TCP's and TLS's handshakes (a new
//! connection costs nothing more than a reused one), share a bandwidth
//! between answers (each answer is paced alone, as if every connection
//! had a link of its own), speak HTTP/2 (no multiplexing), send chunked or
//! compressed bodies, answer ranges or conditional requests, or read any
//! request header but `Connection`.
//!
//! It can also fail on purpose: the first K answers for NAR files
//! (`/nar/...`) cut after half their body and the connection closed, as a
//! flaky link or proxy does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Result;

use crate::tls::Connection;

/// Longest request head read.
const MAX_HEAD_BYTES: u64 = 8 * 1024;
/// How long a client may take to send its request, and how long an idle
/// connection is kept open for the next one.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before accepting again after an accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

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
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // Out of file descriptors or memory for a moment: the
                // connection waits in the backlog until one is freed.
                eprintln!("serve-cache: accepting a connection: {error}");
                thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        let root = root.to_owned();
        let tls = tls.clone();
        let nars_to_cut = nars_to_cut.clone();
        // A thread that cannot be made drops its connection (the client
        // sees it closed and may retry), and the server goes on.
        let spawned = thread::Builder::new().spawn(move || {
            let _ = answer(&root, stream, pace, tls.as_ref(), &nars_to_cut);
        });
        if let Err(error) = spawned {
            eprintln!("serve-cache: a thread for a connection: {error}");
        }
    }
    Ok(())
}

/// One request's head, as far as this server reads it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    target: String,
    /// Whether the connection stays open after the answer.
    keep_alive: bool,
}

/// Answers every request on `stream` until it is to be closed.
fn answer(
    root: &Path,
    stream: TcpStream,
    pace: Pace,
    tls: Option<&Arc<rustls::ServerConfig>>,
    nars_to_cut: &AtomicU32,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    // An answer's head and body leave at once, as nginx's `tcp_nodelay`
    // (on by default) sends them on a kept connection: otherwise Nagle's
    // algorithm holds the body until the client's delayed ACK of the head,
    // some 40 ms more on every request of a reused connection.
    stream.set_nodelay(true)?;
    let connection = match tls {
        None => Connection::Plain(stream),
        Some(config) => Connection::Tls(Box::new(
            crate::tls::accept(config, stream).map_err(std::io::Error::other)?,
        )),
    };
    // One reader for the connection's life: bytes of a next (pipelined)
    // request read with this one stay in its buffer.
    let mut reader = BufReader::new(connection);
    while let Some(request) = read_request(&mut reader)? {
        if !pace.latency_per_request.is_zero() {
            thread::sleep(pace.latency_per_request);
        }
        let keep_alive =
            request.keep_alive && (request.method == "GET" || request.method == "HEAD");
        // One of the first NAR answers is cut: taken from the count, once.
        let cut = request.target.starts_with("/nar/")
            && nars_to_cut
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        respond_with_file(root, reader.get_mut(), &request, (pace, keep_alive, cut))?;
        if !keep_alive {
            break;
        }
    }
    reader.get_mut().finish();
    Ok(())
}

/// Reads the next request's head; `None` when the client closed the
/// connection before sending one.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut head = reader.take(MAX_HEAD_BYTES);
    let mut request_line = String::new();
    if head.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let target = words.next().unwrap_or("").to_owned();
    let version = words.next().unwrap_or("");
    // HTTP/1.1 keeps a connection open unless told not to; HTTP/1.0 closes
    // it unless told to keep it (RFC 9112, section 9.3).
    let mut keep_alive = version == "HTTP/1.1";
    let mut header = String::new();
    while head.read_line(&mut header)? > 2 {
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("connection") {
                for option in value.split(',').map(str::trim) {
                    if option.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if option.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        header.clear();
    }
    if !header.ends_with('\n') {
        // The head was cut at the size limit or by the client: no request
        // to answer, and nothing more to read on this connection.
        return Ok(None);
    }
    Ok(Some(Request {
        method,
        target,
        keep_alive,
    }))
}

fn respond_with_file(
    root: &Path,
    stream: &mut impl Write,
    request: &Request,
    (pace, keep_alive, cut): (Pace, bool, bool),
) -> std::io::Result<()> {
    if request.method != "GET" && request.method != "HEAD" {
        return respond(stream, "405 Method Not Allowed", keep_alive);
    }
    let Some(path) = resolve(root, &request.target) else {
        return respond(stream, "404 Not Found", keep_alive);
    };
    match std::fs::read(&path) {
        Ok(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
                body.len(),
                connection_header(keep_alive)
            );
            stream.write_all(head.as_bytes())?;
            if request.method == "GET" && cut {
                // Half the body, then the connection is closed.
                send_body(stream, &body[..body.len() / 2], pace)?;
                stream.flush()?;
                return Err(std::io::Error::other("cut on purpose"));
            }
            if request.method == "GET" {
                send_body(stream, &body, pace)?;
            }
            stream.flush()
        }
        Err(_) => respond(stream, "404 Not Found", keep_alive),
    }
}

fn connection_header(keep_alive: bool) -> &'static str {
    if keep_alive {
        "keep-alive"
    } else {
        "close"
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

/// An answer without a body.
fn respond(stream: &mut impl Write, status: &str, keep_alive: bool) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: {}\r\n\r\n",
        connection_header(keep_alive)
    );
    stream.write_all(answer.as_bytes())?;
    stream.flush()
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
        let (dir, address) = server_at(pace);
        let get = move |path: &str| {
            let mut stream = TcpStream::connect(address).expect("connect");
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            answer
        };
        (dir, get)
    }

    /// Starts a server on a temporary directory holding `nix-cache-info`.
    fn server_at(pace: Pace) -> (tempfile::TempDir, std::net::SocketAddr) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("nix-cache-info"), "StoreDir: /nix/store\n").expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let root = dir.path().to_owned();
        thread::spawn(move || serve(&root, listener, pace, None));
        (dir, address)
    }

    /// Reads one answer (head and body, by its Content-Length) from `reader`.
    fn read_answer(reader: &mut impl BufRead) -> String {
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).expect("read") > 0,
                "closed: {head}"
            );
            if let Some(value) = line.strip_prefix("Content-Length: ") {
                length = value.trim().parse().expect("a length");
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        head + &String::from_utf8_lossy(&body)
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
    fn a_kept_connection_answers_request_after_request_each_after_the_latency() {
        let latency = Duration::from_millis(100);
        let (_dir, address) = server_at(Pace {
            latency_per_request: latency,
            ..Pace::default()
        });
        let stream = TcpStream::connect(address).expect("connect");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        for path in ["/nix-cache-info", "/missing.narinfo", "/nix-cache-info"] {
            let started = std::time::Instant::now();
            write!(writer, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let answer = read_answer(&mut reader);
            assert!(started.elapsed() >= latency, "{path} answered at once");
            assert!(answer.contains("Connection: keep-alive"), "{answer}");
        }
        // Two requests sent back to back: both answered, in order, each
        // after its own latency; the last asks to close.
        let started = std::time::Instant::now();
        write!(
            writer,
            "GET /nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n\
             HEAD /nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let first = read_answer(&mut reader);
        assert!(first.ends_with("StoreDir: /nix/store\n"), "{first}");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("read to the close");
        assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
        assert!(rest.contains("Connection: close"), "{rest}");
        assert!(
            started.elapsed() >= latency * 2,
            "pipelined requests overlapped"
        );
    }

    #[test]
    fn an_http_1_0_request_is_answered_and_closed() {
        let (_dir, address) = server_at(Pace::default());
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(stream, "GET /nix-cache-info HTTP/1.0\r\n\r\n").expect("send");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("read to the close");
        assert!(answer.contains("Connection: close"), "{answer}");
    }

    #[test]
    fn sixty_four_requests_in_flight_wait_their_latency_together() {
        // Served one after another they would take 64 latencies (32 s);
        // together, one and the time to connect. Twenty is far from both.
        let latency = Duration::from_millis(500);
        let (_dir, address) = server_at(Pace {
            latency_per_request: latency,
            ..Pace::default()
        });
        let started = std::time::Instant::now();
        let clients: Vec<_> = (0..64)
            .map(|_| {
                thread::spawn(move || {
                    let mut stream = TcpStream::connect(address).expect("connect");
                    write!(
                        stream,
                        "GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    .expect("send");
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).expect("read");
                    answer
                })
            })
            .collect();
        for client in clients {
            let answer = client.join().expect("a client");
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= latency, "answered before the latency");
        assert!(
            elapsed < latency * 20,
            "served one after another: {elapsed:?}"
        );
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
