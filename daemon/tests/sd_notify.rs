//! systemd's notify protocol on a real notify socket: the real `deployd`
//! sends READY (and an idle STATUS) once its socket is bound, STATUS lines
//! while a deploy runs, WATCHDOG pings at half of `WATCHDOG_USEC`, and
//! STOPPING on SIGTERM, after which it exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deployd_protocol::{Action, DeployRequest, Message, Request, SecretKey};

/// Collects notify messages until `done` says enough or `timeout` passes.
fn receive_until(
    socket: &UnixDatagram,
    timeout: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while !done(&messages) && Instant::now() < deadline {
        if let Ok(size) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..size]).into_owned();
            messages.extend(text.lines().map(str::to_owned));
        }
    }
    messages
}

fn count(messages: &[String], line: &str) -> usize {
    messages.iter().filter(|message| *message == line).count()
}

#[test]
fn ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    // A stand-in for nix-store whose fetch fails the same way whether or not
    // Nix is on this machine (as an unreachable cache would).
    let nix_store = dir.path().join("nix-store");
    std::fs::write(
        &nix_store,
        "#!/bin/sh\n[ \"$1\" = --realise ] || exit 1\nsleep 0.3\necho 'unable to download: cache unreachable' >&2\nexit 1\n",
    )
    .expect("stand-in");
    std::fs::set_permissions(
        &nix_store,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let config = dir.path().join("config.toml");
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nhostname = \"sambirano\"\nstate_dir = \"{}\"\n\
             [[trusted_keys]]\nkey = \"{}\"\n\
             [nix]\nnix_store = \"{}\"\nsubstituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
             [activation]\nsystem_profile = \"{}\"\ncurrent_system = \"{}\"\nbooted_system = \"{}\"\n",
            path("state"),
            ops.public_key(),
            nix_store.display(),
            cache.public_key(),
            path("profiles/system"),
            path("current-system"),
            path("booted-system"),
        ),
    )
    .expect("config");

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start deployd");
    let mut stderr = BufReader::new(daemon.stderr.take().expect("stderr"));
    let mut line = String::new();
    let address = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read") > 0,
            "deployd exited before listening"
        );
        if let Some((_, address)) = line.trim().split_once("listening on ") {
            break address.to_owned();
        }
    };

    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 3
    });
    assert_eq!(count(&messages, "READY=1"), 1, "{messages:?}");
    assert!(messages.contains(&"STATUS=idle".to_owned()), "{messages:?}");
    assert!(count(&messages, "WATCHDOG=1") >= 3, "{messages:?}");

    // A deploy (whose fetch fails: the cache is unreachable) reports its phases.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let request = DeployRequest::new(
        "notify-1".parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        Action::Switch,
    )
    .expect("random");
    let body = Message::new(
        "sambirano".parse().expect("host"),
        Request::Deploy(request),
        now,
        60,
    )
    .sign(&[&ops])
    .to_json();
    let mut stream = TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "POST /v1/deploy HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    stream.write_all(&body).expect("send body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let messages = receive_until(&socket, Duration::from_secs(30), |m| {
        m.iter().any(|l| l == "STATUS=idle; deploy notify-1 failed")
    });
    assert!(
        messages.contains(&"STATUS=deploy notify-1: fetching".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"STATUS=idle; deploy notify-1 failed".to_owned()),
        "{messages:?}"
    );
    // It failed where the stand-in made it fail, and for that reason.
    let mut stream = TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "GET /v1/deploys/notify-1 HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.contains("\"fetch_failed\"") && answer.contains("cache unreachable"),
        "{answer}"
    );

    let terminated = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        m.contains(&"STOPPING=1".to_owned())
    });
    assert!(messages.contains(&"STOPPING=1".to_owned()), "{messages:?}");
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "deployd exited with {status}");
}
