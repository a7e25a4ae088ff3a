//! The accept loop against peers that connect and then say nothing, or
//! only the first byte of a request: each is cut off once the header
//! timeout passes, so silent peers cannot hold the connection slots for
//! ever; a real request on the same server is still answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use deployd_service::http::{serve_router, HEADER_TIMEOUT};
use tokio_util::sync::CancellationToken;

/// Reads until the server closes the connection; how long that took.
fn time_until_closed(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_are_cut_off_after_the_header_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let server = tokio::spawn(serve_router(listener, router, shutdown.clone()));

    let limit = HEADER_TIMEOUT + Duration::from_secs(5);
    let peers = tokio::task::spawn_blocking(move || {
        let silent = TcpStream::connect(address).expect("connect");
        let mut one_byte = TcpStream::connect(address).expect("connect");
        one_byte.write_all(b"P").expect("write");
        let mut real = TcpStream::connect(address).expect("connect");
        write!(
            real,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut answer = String::new();
        real.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let one_byte = std::thread::spawn(move || time_until_closed(one_byte, limit));
        (
            time_until_closed(silent, limit),
            one_byte.join().expect("thread"),
        )
    })
    .await
    .expect("peers");
    for (peer, closed) in [("silent", peers.0), ("one byte", peers.1)] {
        let closed =
            closed.unwrap_or_else(|| panic!("a {peer} peer was not cut off within {limit:?}"));
        assert!(closed <= limit, "{peer}: {closed:?}");
    }
    shutdown.cancel();
    server.await.expect("server").expect("served");
}
