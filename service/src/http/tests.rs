//! The accept loop in-process, on loopback, with limits an eighth of the
//! real ones (the test process holds both ends of every connection, within
//! a small open-files limit): clients from many addresses filling it, each
//! within its own limit, still leave room for a new client; a kept-alive
//! connection that waits is closed after [`IDLE_TIMEOUT`], the real one.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::testing::{probe_health, Flood, FloodOptions};

/// The real limits' proportions, an eighth of their numbers.
const SMALL: Limits = Limits {
    connections: MAX_CONNECTIONS / 8,
    per_client: MAX_CONNECTIONS_PER_CLIENT / 4,
    crowded_above: CROWDED_ABOVE / 8,
};

/// A service answering `GET /healthz`, on a runtime of its own, stopped
/// when dropped.
struct Running {
    address: SocketAddr,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    fn start() -> Running {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("listen");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let served = (Transport::Plain, SMALL);
        runtime.spawn(serve_within(listener, router, served, shutdown.clone()));
        Running {
            address,
            shutdown,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

#[test]
fn clients_from_many_addresses_filling_it_leave_room_for_a_new_one() {
    let service = Running::start();
    // 9 clients of 8 connections each (each at its limit), 72 for 64
    // slots, every connection with a request every 3 s.
    let sources: Vec<IpAddr> = (10..19)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    let flood = Flood::start(FloodOptions {
        target: service.address,
        sources,
        per_source: SMALL.per_client,
        every: Duration::from_secs(3),
    });
    let held = flood.wait_until_established(SMALL.connections, Duration::from_secs(6));
    assert!(
        held > SMALL.crowded_above - SMALL.per_client,
        "the flood holds only {held} connections: it does not test a nearly full service"
    );
    let mut slowest = Duration::ZERO;
    for probe in 1..=10 {
        match probe_health(service.address, Duration::from_secs(2)) {
            Ok(took) => slowest = slowest.max(took),
            Err(why) => {
                panic!("probe {probe} of 10 from 127.0.0.1: {why} (the flood holds {held} connections)")
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "10 probes answered, the slowest in {slowest:?}, while the flood held {held} connections"
    );
}

#[test]
fn a_kept_alive_connection_that_waits_is_closed_after_the_idle_timeout() {
    let service = Running::start();
    let mut stream = TcpStream::connect(service.address).expect("connect");
    stream
        .set_read_timeout(Some(HEADER_TIMEOUT * 2))
        .expect("timeout");
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").expect("send");
    let mut answer = [0u8; 1024];
    let read = stream.read(&mut answer).expect("answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let rest = stream.read(&mut answer);
    let waited = answered.elapsed();
    assert!(
        matches!(rest, Ok(0)),
        "not closed: {rest:?} after {waited:?}"
    );
    assert!(
        waited >= IDLE_TIMEOUT - Duration::from_millis(200)
            && waited < IDLE_TIMEOUT + Duration::from_millis(1500),
        "closed after {waited:?}, not after {IDLE_TIMEOUT:?}"
    );
}
