//! Refusals cost the host little (issue 25, sixth finding and the body
//! limit): 2000 bad requests in a burst leave a bounded log, not a line
//! each (journald's rate limit would otherwise drop the daemon's own audit
//! lines), and are all counted in `/metrics`; a body announced larger than
//! the envelope limit is refused at once, without waiting for its bytes.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use deployd_service::testing::repeat_request;
use support::running::Running;
use support::{config_text, key};

/// The bad requests sent, over this many connections at once.
const BAD_REQUESTS: usize = 2000;
const CONNECTIONS: usize = 4;

fn start(dir: &std::path::Path) -> Running {
    let config = dir.join("config.toml");
    let text = config_text(dir, &key("ops-1"), "listen = \"127.0.0.1:0\"\n", None);
    std::fs::write(&config, text).expect("config");
    Running::start(&config)
}

/// One request on its own connection; the whole answer, or why none came
/// within `timeout`.
fn exchange(target: SocketAddr, request: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(target).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("timeout: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) if !answer.is_empty() => Ok(String::from_utf8_lossy(&answer).into_owned()),
        Err(error) => Err(format!("no answer within {timeout:?}: {error}")),
    }
}

#[test]
fn a_burst_of_bad_requests_leaves_a_bounded_log_and_is_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = start(dir.path());
    let target: SocketAddr = daemon.address.parse().expect("address");
    std::thread::sleep(Duration::from_millis(300));
    let logged_before = daemon.lines.lock().expect("lines").len();

    let started = Instant::now();
    let request = format!("GET /v2/nothing HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                repeat_request(target, request.as_bytes(), BAD_REQUESTS / CONNECTIONS)
            })
        })
        .collect();
    for sender in senders {
        let statuses = sender.join().expect("sender").expect("answers");
        assert!(statuses.iter().all(|status| *status == 404), "{statuses:?}");
    }
    let burst = started.elapsed();
    // What the daemon wrote for them has reached the collector by now.
    std::thread::sleep(Duration::from_millis(500));
    let lines = daemon.lines.lock().expect("lines")[logged_before..].to_vec();
    eprintln!(
        "{BAD_REQUESTS} requests refused in {burst:?} wrote {} log lines: {lines:?}",
        lines.len()
    );
    assert!(
        lines.len() <= 2,
        "{} requests refused in {burst:?} wrote {} log lines (at most 2 expected), first: {:?}",
        BAD_REQUESTS,
        lines.len(),
        lines.first()
    );
    assert!(
        lines.iter().any(|line| line.contains("not_found")),
        "the first refusal is not logged: {lines:?}"
    );

    let metrics = exchange(
        target,
        &format!("GET /metrics HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
    .expect("metrics");
    let counted = format!("deployd_refused_total{{code=\"not_found\"}} {BAD_REQUESTS}\n");
    assert!(metrics.contains(&counted), "no {counted:?} in {metrics}");
}

#[test]
fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = start(dir.path());
    let target: SocketAddr = daemon.address.parse().expect("address");
    // 300 000 bytes announced (the limit is 256 KiB), none sent.
    let started = Instant::now();
    let answer = exchange(
        target,
        &format!(
            "POST /v1/deploy HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n"
        ),
        Duration::from_secs(2),
    )
    .expect("an answer before the body");
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("\"payload_too_large\""),
        "after {:?}: {answer}",
        started.elapsed()
    );
}
