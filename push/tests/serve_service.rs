//! `push serve` as systemd runs it, on a real notify socket: READY once it
//! listens, WATCHDOG pings at half of `WATCHDOG_USEC`, a badly signed hook
//! refused with the daemon's JSON, STOPPING on SIGTERM, then exit 0. And
//! `push serve --check`: a valid config passes, a bad one is one line, exit 2,
//! and so is a password for a plain `http://` repository.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deployd_protocol::SecretKey;

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

/// A config in `dir` for a GitHub forge, its key and secret files written.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let key = SecretKey::generate("ci-1".parse().expect("name")).expect("random");
    std::fs::write(dir.join("ci-1.secret"), key.to_key_file_text().as_bytes()).expect("key");
    std::fs::write(dir.join("secret"), "s3cret\n").expect("secret");
    let config = dir.join("forge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{dir}/state\"\nrepository = \"file://{dir}/fleet.git\"\n\
             key_file = \"{dir}/ci-1.secret\"\n\
             [forge]\nkind = \"github\"\napi_url = \"http://127.0.0.1:9\"\nrepository = \"ops/fleet\"\nsecret_file = \"{dir}/secret\"\n\
             [[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n",
            dir = dir.display()
        ),
    )
    .expect("config");
    config
}

fn request(address: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{head}\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    stream.write_all(body).expect("body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn ready_watchdog_a_refused_hook_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut service = Command::new(env!("CARGO_BIN_EXE_push"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start push serve");
    let mut stderr = BufReader::new(service.stderr.take().expect("stderr"));
    let mut line = String::new();
    let address = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read") > 0,
            "push serve exited before listening"
        );
        if let Some((_, rest)) = line.trim().split_once("listening on ") {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 3
    });
    assert_eq!(count(&messages, "READY=1"), 1, "{messages:?}");
    assert!(count(&messages, "WATCHDOG=1") >= 3, "{messages:?}");

    let healthy = request(&address, "GET /healthz HTTP/1.1", b"");
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");
    let refused = request(
        &address,
        "POST /v1/hooks/github HTTP/1.1\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00",
        b"{\"ref\":\"refs/heads/main\"}",
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("\"error\":\"bad_signature\""), "{refused}");
    let other_forge = request(&address, "POST /v1/hooks/gitlab HTTP/1.1", b"{}");
    assert!(other_forge.starts_with("HTTP/1.1 404"), "{other_forge}");

    let terminated = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        m.contains(&"STOPPING=1".to_owned())
    });
    assert!(messages.contains(&"STOPPING=1".to_owned()), "{messages:?}");
    let status = service.wait().expect("wait");
    assert!(status.success(), "push serve exited with {status}");
}

#[test]
fn check_passes_a_valid_config_and_refuses_a_bad_one_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let check = |path: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_push"))
            .args(["serve", "--check", "--config"])
            .arg(path)
            .args(extra)
            .output()
            .expect("push serve --check")
    };
    let output = check(&config, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The secret files are read unless skipped (a build-time check has none).
    std::fs::remove_file(dir.path().join("secret")).expect("remove");
    let output = check(&config, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secret"), "{stderr}");
    let output = check(&config, &["--skip-secret-files"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(&config).expect("config");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("kind = \"github\"", "kind = \"bitbucket\""),
    )
    .expect("bad");
    let output = check(&bad, &["--skip-secret-files"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("bitbucket"), "{stderr}");

    // Credentials in a URL: refused, and not shown.
    std::fs::write(
        &bad,
        text.replace("http://127.0.0.1:9", "http://bot:t0ken@127.0.0.1:9"),
    )
    .expect("bad");
    let output = check(&bad, &["--skip-secret-files"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[forge] api_url \"http://bot:***@127.0.0.1:9\" has a user or password in it; credentials never go in a URL (logs and statuses show it): the forge's token goes in token_file"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0ken"), "{stderr}");

    // A password goes over https:// only, never plain http://.
    std::fs::write(dir.path().join("secret"), "s3cret\n").expect("secret");
    std::fs::write(dir.path().join("git-token"), "t0ken\n").expect("token");
    let with_password = |url: &str| {
        text.replace(&format!("file://{}/fleet.git", dir.path().display()), url)
            + &format!(
                "[git]\nusername = \"deployd\"\npassword_file = \"{}/git-token\"\n",
                dir.path().display()
            )
    };
    std::fs::write(&bad, with_password("http://git.example.org/ops/fleet.git")).expect("bad");
    let output = check(&bad, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("https://"), "{stderr}");
    std::fs::write(&bad, with_password("https://git.example.org/ops/fleet.git")).expect("good");
    let output = check(&bad, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
