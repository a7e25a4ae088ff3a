//! No file I/O under the daemon's lock: a subscriber whose log read blocks,
//! a log write that blocks, or a retried envelope whose comparison would read
//! files, must not stall the daemon. Each test makes one of those files a
//! FIFO (named pipe) that nobody opens from the other side, so touching it
//! blocks for ever, then asks for `/v1/status`, which needs the lock.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::{api, Config, Daemon, Environment};
use deployd_protocol::{Action, SecretKey};
use support::{config_text, deploy_envelope, key, now, stand_in_nix_store};
use tower::ServiceExt;

struct Host {
    daemon: Arc<Daemon>,
    ops: SecretKey,
    dir: tempfile::TempDir,
}

/// A daemon whose fetch is `fetch_script` (a stand-in for nix-store).
fn host(fetch_script: &str) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = key("ops-1");
    let fetch = stand_in_nix_store(dir.path(), fetch_script);
    let text = config_text(dir.path(), &ops, "", Some(&fetch));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, Environment::default()).expect("daemon");
    Host { daemon, ops, dir }
}

fn envelope(host: &Host, id: &str) -> Vec<u8> {
    deploy_envelope(&host.ops, id, (now(), 60), Action::Switch)
}

async fn send(host: &Host, request: Request<Body>) -> StatusCode {
    api::router(host.daemon.clone())
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

fn post(body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/deploy")
        .body(Body::from(body))
        .expect("request")
}

/// `request` is answered within 5 s. It runs on a thread of its own, so a
/// daemon that blocks on its lock fails the test instead of hanging it.
fn answered_within_5_s(host: &Host, request: Request<Body>) -> Option<StatusCode> {
    let daemon = host.daemon.clone();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let status = runtime.block_on(async move {
            api::router(daemon)
                .oneshot(request)
                .await
                .expect("infallible")
                .status()
        });
        let _ = sender.send(status);
    });
    receiver.recv_timeout(Duration::from_secs(5)).ok()
}

/// `/v1/status` answers within 5 s.
fn status_answers(host: &Host) {
    let request = Request::get("/v1/status")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        answered_within_5_s(host, request),
        Some(StatusCode::OK),
        "the daemon stalled"
    );
}

/// A FIFO in place of a file, nobody on its other side until it is
/// dropped: then both sides are opened, so whatever blocked on it goes on,
/// and a plain file takes its place again (so the test can end).
struct Fifo(std::path::PathBuf);

impl Fifo {
    fn replace(path: &Path) -> Fifo {
        let _ = std::fs::remove_file(path);
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        Fifo(path.to_owned())
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // Opening a FIFO read-write never blocks and serves both sides.
        let both = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.0);
        std::thread::sleep(Duration::from_millis(300));
        // A plain file again, for whatever opens it next.
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::write(&self.0, "");
        drop(both);
    }
}

async fn wait_until_final(host: &Host, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !host
        .daemon
        .deploy(id)
        .is_some_and(|deploy| deploy.record.state.is_final())
    {
        assert!(std::time::Instant::now() < deadline, "{id} never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_whose_log_read_blocks_does_not_stall_the_daemon() {
    let host = host("#!/bin/sh\nexit 1\n");
    assert_eq!(
        send(&host, post(envelope(&host, "done"))).await,
        StatusCode::ACCEPTED
    );
    wait_until_final(&host, "done").await;
    let _fifo = Fifo::replace(&host.dir.path().join("state/deploys/done/log"));
    let daemon = host.daemon.clone();
    let subscriber = tokio::spawn(async move {
        api::router(daemon)
            .oneshot(
                Request::get("/v1/deploys/done/events")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    status_answers(&host);
    drop(_fifo);
    subscriber.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_write_that_blocks_does_not_stall_the_daemon() {
    // The fetch prints a line, waits, prints another.
    let host = host("#!/bin/sh\n[ \"$1\" = --realise ] || exit 1\necho first\nsleep 1\necho second\nsleep 30\nexit 1\n");
    assert_eq!(
        send(&host, post(envelope(&host, "running"))).await,
        StatusCode::ACCEPTED
    );
    let log = host.dir.path().join("state/deploys/running/log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains("first")) {
        assert!(std::time::Instant::now() < deadline, "no first line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fifo = Fifo::replace(&log);
    // A safety valve: whatever happens, the FIFO is released after 8 s, so
    // a regression fails this test instead of hanging it.
    let valve = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(8));
        drop(fifo);
    });
    // The runtime's timers still run while the deploy's task is stuck.
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the runtime's timers stalled for {:?}",
        started.elapsed()
    );
    status_answers(&host);
    valve.join().expect("valve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_envelope_is_recognised_without_reading_files() {
    let host = host("#!/bin/sh\nexit 1\n");
    let first = envelope(&host, "first");
    assert_eq!(send(&host, post(first.clone())).await, StatusCode::ACCEPTED);
    wait_until_final(&host, "first").await;
    let _fifo = Fifo::replace(&host.dir.path().join("state/deploys/first/envelope"));
    // The very same envelope again: the deploy it started.
    assert_eq!(
        answered_within_5_s(&host, post(first)),
        Some(StatusCode::ACCEPTED),
        "the retry stalled"
    );
    status_answers(&host);
}
