//! The slow-body attack on `push serve`'s webhooks, against the real
//! service on loopback: 200 clients each announce a 5 MiB body with a
//! well-formed GitHub signature header (64 hex digits, the wrong ones) and
//! send it slowly. The service's peak resident memory (`VmHWM` in
//! `/proc/PID/status`) stays within a bound, no attacker's hook is
//! accepted, and a hook the forge signed, sent during the burst, is
//! accepted (`202`) within a few seconds.
//!
//! The bound, [`PEAK_GROWTH_KIB`] over the idle service: it reads at most
//! its four large-body slots' worth of 5 MiB bodies at once (20 MiB), and
//! each waiting connection costs its task and what hyper read with its
//! headers (a few KiB; 200 × 64 KiB = 12.5 MiB allowed); twice that
//! for the allocator's slack is 64 MiB, against the 1000 MiB (200 × 5 MiB)
//! that reading every body at once costs. Measured: 23 MiB idle, 49 MiB at
//! the peak, 29 MiB a second after the burst.
//!
//! Every client stops by itself: when the service closes its connection,
//! or at [`CLIENT_DEADLINE`], whichever comes first.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deployd_lab::forge::sign::hmac_sha256_hex;

/// The clients sending slow bodies.
const ATTACKERS: usize = 200;
/// The body each of them announces: the most a hook may be.
const BODY_BYTES: usize = 5 * 1024 * 1024;
/// What an attacker sends at a time, and how often: 640 KiB/s, a 5 MiB
/// body in about 8 s.
const CHUNK_BYTES: usize = 32 * 1024;
const CHUNK_EVERY: Duration = Duration::from_millis(50);
/// When every attacker gives up, whatever happened.
const CLIENT_DEADLINE: Duration = Duration::from_secs(15);
/// How much the service's peak resident memory may grow over its idle size.
const PEAK_GROWTH_KIB: u64 = 64 * 1024;
/// How long the forge's hook may take during the burst.
const HOOK_WITHIN: Duration = Duration::from_secs(5);
/// The webhook secret.
const SECRET: &str = "the webhook secret of the slow-body test";

/// `push serve`, killed (and waited for) on drop.
struct Service {
    child: Child,
    address: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `push serve` taking GitHub hooks on a free loopback port,
    /// following `main`; its repository does not exist (a push it accepts
    /// fails to fetch later, which this test does not wait for).
    fn start(dir: &Path) -> Service {
        let push = deployd_lab::sibling_binary(Path::new(env!("CARGO_BIN_EXE_lab")), "push")
            .expect("push built");
        let key = support::deployd::key("ci-1");
        std::fs::write(dir.join("ci-1.secret"), key.to_key_file_text().as_bytes()).expect("key");
        std::fs::write(dir.join("secret"), format!("{SECRET}\n")).expect("secret");
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let config = dir.join("forge.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{address}\"\nstate_dir = \"{dir}/state\"\n\
                 repository = \"file://{dir}/no-repository.git\"\nkey_file = \"{dir}/ci-1.secret\"\n\
                 [forge]\nkind = \"github\"\napi_url = \"http://127.0.0.1:9\"\nrepository = \"ops/fleet\"\n\
                 secret_file = \"{dir}/secret\"\n\
                 [[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n",
                dir = dir.display()
            ),
        )
        .expect("config");
        let log = dir.join("service.log");
        let output = std::fs::File::create(&log).expect("log");
        let child = Command::new(push)
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log"))
            .stderr(output)
            .spawn()
            .expect("push serve");
        let service = Service {
            child,
            address,
            log,
        };
        let url = format!("http://{address}/healthz");
        let up = support::wait_until(Duration::from_secs(20), || {
            reqwest::blocking::get(&url).is_ok_and(|answer| answer.status().is_success())
        });
        assert!(up, "push serve did not start:\n{}", service.log_text());
        service
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of `/proc/PID/status`, in KiB.
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the service's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }
}

/// One attacker: the headers of a 5 MiB GitHub push hook with a
/// well-formed but wrong signature, then the body, slowly; what the service
/// answered (`None`: nothing before the client gave up).
fn send_slow_body(address: SocketAddr, source: std::net::IpAddr, started: Instant) -> Option<u16> {
    let mut stream = connect_from(source, address)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let headers = format!(
        "POST /v1/hooks/github HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256={}\r\n\
         Content-Length: {BODY_BYTES}\r\n\r\n",
        "ab".repeat(32)
    );
    stream.write_all(headers.as_bytes()).ok()?;
    let chunk = vec![b' '; CHUNK_BYTES];
    let mut sent = 0;
    while sent < BODY_BYTES && started.elapsed() < CLIENT_DEADLINE {
        let length = CHUNK_BYTES.min(BODY_BYTES - sent);
        match stream.write(&chunk[..length]) {
            Ok(written) => sent += written,
            // The service stopped reading (the window is full): try again
            // until the deadline.
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            // It closed the connection: it answered, or gave up on us.
            Err(_) => break,
        }
        std::thread::sleep(CHUNK_EVERY);
    }
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).ok()?;
    let status_line = std::str::from_utf8(&answer[..read]).ok()?;
    status_line.split(' ').nth(1)?.parse().ok()
}

/// A connection to `address` from `source` (a loopback address of its own:
/// each attacker is another client, as a botnet's are, so that the
/// per-client connection limit is not what bounds the service's memory).
fn connect_from(source: std::net::IpAddr, address: SocketAddr) -> Option<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source, 0)).ok()?;
        socket.connect(address).await.ok()
    })?;
    let stream = stream.into_std().ok()?;
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

/// The forge's push hook for `main`, signed with the secret.
fn send_signed_hook(address: SocketAddr) -> u16 {
    let body = format!(
        "{{\"ref\":\"refs/heads/main\",\"before\":\"{}\",\"after\":\"{}\"}}",
        "a".repeat(40),
        "b".repeat(40)
    );
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    );
    reqwest::blocking::Client::new()
        .post(format!("http://{address}/v1/hooks/github"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "the-forge")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("the forge's hook answered")
        .status()
        .as_u16()
}

#[test]
fn slow_bodies_neither_exhaust_memory_nor_lock_out_the_forge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::start(dir.path());
    let address = service.address;
    let idle_kib = service.memory_kib("VmRSS");

    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|index| {
            // 127.0.1.1 and on: none of them the forge's 127.0.0.1.
            let source =
                std::net::IpAddr::from([127, 0, 1 + (index / 250) as u8, 1 + (index % 250) as u8]);
            std::thread::spawn(move || send_slow_body(address, source, started))
        })
        .collect();
    // Every attacker connected and sending.
    std::thread::sleep(Duration::from_secs(2));
    let busy_kib = service.memory_kib("VmRSS");
    let sent_at = Instant::now();
    let forge_answer = send_signed_hook(address);
    let hook_took = sent_at.elapsed();

    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for attacker in attackers {
        let answer = attacker.join().expect("attacker thread");
        let key = answer.map_or("none".to_owned(), |status| status.to_string());
        *answers.entry(key).or_default() += 1;
    }
    let burst_took = started.elapsed();
    let peak_kib = service.memory_kib("VmHWM");
    std::thread::sleep(Duration::from_secs(1));
    let after_kib = service.memory_kib("VmRSS");
    eprintln!(
        "push serve: idle {idle_kib} KiB, 2 s into the burst {busy_kib} KiB, peak (VmHWM) \
         {peak_kib} KiB, 1 s after the burst {after_kib} KiB; the burst took {burst_took:?}; \
         the attackers' answers {answers:?}; the forge's hook {forge_answer} in {hook_took:?}"
    );

    assert!(
        peak_kib <= idle_kib + PEAK_GROWTH_KIB,
        "push serve's peak memory grew from {idle_kib} KiB to {peak_kib} KiB under \
         {ATTACKERS} slow {BODY_BYTES}-byte bodies (at most {PEAK_GROWTH_KIB} KiB of growth allowed)"
    );
    assert_eq!(
        forge_answer,
        202,
        "the forge's hook during the burst: {}",
        service.log_text()
    );
    assert!(
        hook_took <= HOOK_WITHIN,
        "the forge's hook took {hook_took:?} during the burst (at most {HOOK_WITHIN:?})"
    );
    assert!(
        !answers.contains_key("202") && !answers.contains_key("204"),
        "an attacker's hook was taken: {answers:?}"
    );
    let status = reqwest::blocking::get(format!("http://{address}/v1/status"))
        .and_then(|answer| answer.json::<serde_json::Value>())
        .expect("status");
    let queued_or_run = status["queued"].as_array().map_or(0, Vec::len)
        + status["recent"].as_array().map_or(0, Vec::len)
        + usize::from(!status["running"].is_null());
    assert_eq!(queued_or_run, 1, "only the forge's push: {status}");
}
