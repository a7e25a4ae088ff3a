//! A stand-in for one host's deployd, for tests of how push reaches it:
//! over HTTPS (rustls, with the test certificate of `tests/fixtures/tls`,
//! which the test CA signed for 127.0.0.1) or over plain HTTP. It answers
//! `GET /v1/status` (its last deploy is `d-1`) and `GET
//! /v1/deploys/d-1/events` (one log line, then the final record), 404
//! otherwise, and records every request line it read, or `TLS
//! ClientHello` when a plain HTTP one was greeted with TLS. Its `/v1/status`
//! has the shape of deployd's own (`deployd_protocol::api::StatusResponse`,
//! which push parses), under the name it is given ([`FakeHost::named`]:
//! a machine that is not the one the inventory means).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The one log line its deploy has.
pub const LOG_LINE: &str = "activated over the wire";

/// The host's name.
pub const HOST: &str = "sambirano";

/// What a [`FakeHost::fresh`] is given as its name: it answers as [`HOST`]
/// with no deploy.
const FRESH: &str = "";

/// A file of `tests/fixtures/tls`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// The fake deployd; it serves until the test process ends.
pub struct FakeHost {
    /// Where it listens (127.0.0.1).
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHost {
    /// One that speaks HTTPS only.
    pub fn https() -> FakeHost {
        FakeHost::start(Some(server_config()), HOST)
    }

    /// One that speaks plain HTTP only.
    pub fn http() -> FakeHost {
        FakeHost::start(None, HOST)
    }

    /// One that speaks plain HTTP and calls itself `name` in its status.
    pub fn named(name: &'static str) -> FakeHost {
        FakeHost::start(None, name)
    }

    /// One that speaks plain HTTP and has had no deploy yet.
    pub fn fresh() -> FakeHost {
        FakeHost::start(None, FRESH)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, name: &'static str) -> FakeHost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tls, recorded) = (tls.clone(), recorded.clone());
                thread::spawn(move || answer(stream, tls.as_ref(), &recorded, name));
            }
        });
        FakeHost { address, requests }
    }

    /// The requests it read, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let certificates = CertificateDer::pem_file_iter(fixture("server.pem"))
        .expect("server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
    // The provider the crate features name: ring, the tree's only one.
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("server config");
    Arc::new(config)
}

fn answer(
    stream: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
    recorded: &Mutex<Vec<String>>,
    name: &str,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    match tls {
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            // A client that refuses the certificate ends the handshake:
            // reading the request then fails, and nothing is recorded.
            serve(rustls::StreamOwned::new(connection, stream), recorded, name);
        }
        None => {
            let mut first = [0u8; 1];
            // A TLS record starts with 0x16 (handshake): not HTTP, which an
            // HTTP server answers as hyper does.
            if stream.peek(&mut first).is_ok_and(|read| read == 1) && first[0] == 0x16 {
                recorded
                    .lock()
                    .expect("lock")
                    .push("TLS ClientHello".into());
                let mut stream = stream;
                let _ = stream.read(&mut [0u8; 4096]);
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                return;
            }
            serve(stream, recorded, name);
        }
    }
}

fn serve(stream: impl Read + Write, recorded: &Mutex<Vec<String>>, name: &str) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let request_line = request_line.trim().to_owned();
    recorded.lock().expect("lock").push(request_line.clone());
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/v1/status" => ("200 OK", "application/json", status_json(name)),
        "/v1/deploys/d-1/events" => ("200 OK", "text/event-stream", events()),
        _ => (
            "404 Not Found",
            "application/json",
            r#"{"error":"not_found","message":"no such thing"}"#.to_owned(),
        ),
    };
    let stream = reader.get_mut();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";

fn status_json(name: &str) -> String {
    let last_deploy = serde_json::json!({
        "deploy_id": "d-1", "state": "succeeded", "store_path": SYSTEM,
        "rev": null, "finished_at_ms": 1, "error": null
    });
    let (name, last_deploy) = match name {
        FRESH => (HOST, serde_json::Value::Null),
        name => (name, last_deploy),
    };
    serde_json::json!({
        "hostname": name,
        "current_system": SYSTEM,
        "booted_system": SYSTEM,
        "generations": [],
        "current_deploy": null,
        "active_deploy": null,
        "last_deploy": last_deploy,
        "reboot_required": false,
        "daemon_version": "0.1.0",
        "nix_version": null,
        "substituters": [],
        "trusted_public_keys": [],
    })
    .to_string()
}

/// The final record of `d-1`, as deployd sends it.
pub fn record_json() -> String {
    serde_json::json!({
        "deploy_id": "d-1", "host": HOST, "store_path": SYSTEM, "action": "switch",
        "flake": null, "rev": null, "key": "ops-1", "issued_at": 1, "state": "succeeded",
        "phases": [], "error": null, "previous_system": null, "reboot_required": false,
        "log_tail": [LOG_LINE], "created_at_ms": 1000, "finished_at_ms": 2000,
    })
    .to_string()
}

fn events() -> String {
    let log = serde_json::json!({ "line": LOG_LINE });
    format!(
        "event: log\nid: 1\ndata: {log}\n\nevent: done\nid: 2\ndata: {}\n\n",
        record_json()
    )
}
