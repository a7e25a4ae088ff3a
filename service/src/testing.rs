//! Test support (feature `testing`): the client of issue 25's first
//! finding, which held every connection slot of a service with a few bytes
//! a second, and the probe that tells whether another client still gets
//! an answer meanwhile. Only ever aimed at loopback: Linux answers every
//! 127.0.0.0/8 address on `lo`, so a flood can come from 127.0.0.2 (or
//! several such addresses) while the probe comes from 127.0.0.1.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

/// How long a flood connection waits before connecting again once the
/// service closed it (a real attacker would not wait; the test machine's
/// cores are shared).
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Connections that each send `GET /healthz` every few seconds, from given
/// local addresses, until dropped; they connect again when closed.
pub struct Flood {
    /// Stops every connection.
    stop: CancellationToken,
    /// What the connections saw.
    counts: Arc<FloodCounts>,
    /// The thread running them.
    thread: Option<JoinHandle<()>>,
}

/// What a flood's connections saw so far.
#[derive(Debug, Default)]
pub struct FloodCounts {
    /// Connections open now that have had at least one answer.
    pub held: AtomicUsize,
    /// Connections made (the service accepted them at the TCP level).
    pub connected: AtomicUsize,
    /// Answers received.
    pub answers: AtomicUsize,
}

/// Where a flood comes from and how hard it pushes.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The service.
    pub target: SocketAddr,
    /// The local addresses the connections are bound to.
    pub sources: Vec<IpAddr>,
    /// Connections from each source address.
    pub per_source: usize,
    /// How long each connection waits between its requests.
    pub every: Duration,
}

impl Flood {
    /// Starts the flood on a thread of its own; its connections are opened
    /// spread over one `every`.
    pub fn start(options: FloodOptions) -> Flood {
        let stop = CancellationToken::new();
        let counts = Arc::new(FloodCounts::default());
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the flood's runtime");
                runtime.block_on(run(options, stop, counts));
            })
        };
        Flood {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    /// What its connections saw so far.
    pub fn counts(&self) -> &FloodCounts {
        &self.counts
    }

    /// Waits up to `timeout` until `held` connections are open and
    /// answered, and every connection was made at least once; returns the
    /// connections held then.
    pub fn wait_until_established(&self, held: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.counts.held.load(Ordering::SeqCst) >= held {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.counts.held.load(Ordering::SeqCst)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(options: FloodOptions, stop: CancellationToken, counts: Arc<FloodCounts>) {
    let total = options.sources.len() * options.per_source;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let source = options.sources[index % options.sources.len()];
        let start_after = options.every.mul_f64(index as f64 / total as f64);
        let (stop, counts) = (stop.clone(), counts.clone());
        let (target, every) = (options.target, options.every);
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(start_after) => {}
            }
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = hold_one(source, target, every, &counts) => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One connection from `source`: a request every `every`, for as long as
/// the service keeps it open.
async fn hold_one(source: IpAddr, target: SocketAddr, every: Duration, counts: &FloodCounts) {
    let Ok(socket) = (match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }) else {
        return;
    };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return;
    }
    let Ok(Ok(mut stream)) = tokio::time::timeout(every, socket.connect(target)).await else {
        return;
    };
    counts.connected.fetch_add(1, Ordering::SeqCst);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let mut held = false;
    loop {
        if stream.write_all(request.as_bytes()).await.is_err() {
            break;
        }
        let mut answer = Vec::new();
        let read = read_answer(&mut stream, &mut answer);
        if tokio::time::timeout(every * 4, read).await != Ok(true) {
            break;
        }
        counts.answers.fetch_add(1, Ordering::SeqCst);
        if !held {
            held = true;
            counts.held.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(every).await;
    }
    if held {
        counts.held.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads one answer (headers, then `Content-Length` bytes); false when the
/// connection ends first.
async fn read_answer(stream: &mut tokio::net::TcpStream, answer: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        if let Some(length) = answer_length(answer) {
            if answer.len() >= length {
                return true;
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
        }
    }
}

/// The whole answer's length, once its headers are in.
fn answer_length(answer: &[u8]) -> Option<usize> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let body = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(end + body)
}

/// `GET /healthz` on a new connection from the default source address
/// (127.0.0.1 for a loopback target): the time to a `200`, or why none came
/// within `timeout`.
pub fn probe_health(target: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|error| format!("cannot connect: {error}"))?;
    let left = timeout.saturating_sub(started.elapsed());
    let set = stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| stream.set_write_timeout(Some(left.max(Duration::from_millis(1)))));
    set.map_err(|error| format!("cannot set timeouts: {error}"))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| format!("cannot send: {error}"))?;
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let elapsed = started.elapsed();
    match read {
        _ if answer.starts_with(b"HTTP/1.1 200") && elapsed <= timeout => Ok(elapsed),
        Err(error) => Err(format!(
            "no answer within {timeout:?} ({error}, after {elapsed:?})"
        )),
        Ok(_) => Err(format!(
            "answered {:?} after {elapsed:?}",
            String::from_utf8_lossy(&answer)
        )),
    }
}

/// Sends `request` (a whole HTTP/1.1 request, keep-alive) `times` times
/// over one connection, one after the other; returns each answer's status
/// code.
pub fn repeat_request(
    target: SocketAddr,
    request: &[u8],
    times: usize,
) -> Result<Vec<u16>, String> {
    let mut stream =
        TcpStream::connect(target).map_err(|error| format!("cannot connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|error| format!("cannot set a timeout: {error}"))?;
    let mut statuses = Vec::with_capacity(times);
    let mut buffer = Vec::new();
    for sent in 0..times {
        stream
            .write_all(request)
            .map_err(|error| format!("cannot send request {sent}: {error}"))?;
        let mut chunk = [0u8; 4096];
        let length = loop {
            if let Some(length) = answer_length(&buffer).filter(|length| buffer.len() >= *length) {
                break length;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err(format!("closed after {sent} answers")),
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                Err(error) => return Err(format!("no answer {sent}: {error}")),
            }
        };
        let status = String::from_utf8_lossy(&buffer[..length.min(12)])
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&buffer)))?;
        statuses.push(status);
        buffer.drain(..length);
    }
    Ok(statuses)
}
