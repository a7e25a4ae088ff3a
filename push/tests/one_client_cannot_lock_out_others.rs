//! One client cannot lock everyone else out of `push serve` (issue 25,
//! first finding): the real service, a flood from 127.0.0.2 of 520
//! connections that each send a tiny request every 3 s, and meanwhile
//! `GET /healthz` from 127.0.0.1 answered within 2 s, every time: the
//! forge's hooks still get through. The flood holds exactly the
//! per-address limit.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployd_protocol::SecretKey;
use deployd_service::http::MAX_CONNECTIONS_PER_CLIENT;
use deployd_service::testing::{probe_health, Flood, FloodOptions};

/// How many probes, one a second, while the flood goes on.
const PROBES: usize = 10;
/// How long a probe may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `push serve` for a GitHub forge, its files in `dir`; killed on drop.
struct Service(Child);

impl Service {
    fn start(dir: &Path) -> (Service, SocketAddr) {
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_push"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start push serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let service = Service(child);
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
        // Its later lines are read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines().map_while(Result::ok) {});
        (service, address.parse().expect("address"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_flood_from_one_address_leaves_others_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_service, target) = Service::start(dir.path());

    let flood = Flood::start(FloodOptions {
        target,
        sources: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
        per_source: 520,
        every: Duration::from_secs(3),
    });
    let held = flood.wait_until_established(520, Duration::from_secs(6));

    let mut slowest = Duration::ZERO;
    for probe in 1..=PROBES {
        match probe_health(target, PROBE_TIMEOUT) {
            Ok(took) => slowest = slowest.max(took),
            Err(why) => panic!(
                "probe {probe} of {PROBES} from 127.0.0.1: {why} (the flood from 127.0.0.2 holds {held} connections)"
            ),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let held = flood.wait_until_established(MAX_CONNECTIONS_PER_CLIENT, Duration::ZERO);
    eprintln!(
        "{PROBES} probes from 127.0.0.1 answered, the slowest in {slowest:?}, while the flood from 127.0.0.2 held {held} connections"
    );
    assert_eq!(
        held, MAX_CONNECTIONS_PER_CLIENT,
        "the flood holds as many connections as one address may"
    );
}
