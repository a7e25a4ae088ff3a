//! One client cannot lock everyone else out (issue 25, first finding): the
//! real daemon, a flood from 127.0.0.2 of 520 connections that each send a
//! tiny request every 3 s (about 5 KB/s in all, what once held every
//! connection slot), and meanwhile `GET /healthz` from 127.0.0.1 answered
//! within 2 s, every time. The flood holds exactly the per-address limit,
//! and the connections refused beyond it leave a line or two in the log.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use deployd_service::http::MAX_CONNECTIONS_PER_CLIENT;
use deployd_service::testing::{probe_health, Flood, FloodOptions};
use support::running::Running;
use support::{config_text, key};

/// How many probes, one a second, while the flood goes on.
const PROBES: usize = 10;
/// How long a probe may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn a_flood_from_one_address_leaves_others_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let text = config_text(
        dir.path(),
        &key("ops-1"),
        "listen = \"127.0.0.1:0\"\n",
        None,
    );
    std::fs::write(&config, text).expect("config");
    let daemon = Running::start(&config);
    let target: SocketAddr = daemon.address.parse().expect("address");

    let flood = Flood::start(FloodOptions {
        target,
        sources: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
        per_source: 520,
        every: Duration::from_secs(3),
    });
    // Established: every connection was tried once (they start spread
    // over 3 s), and those the daemon keeps are answered.
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
    // Thousands of connections refused meanwhile, and the log has a line
    // or two about them, not one each.
    let refused = flood.counts().connected.load(Ordering::SeqCst) - held;
    let lines = daemon.lines.lock().expect("lines").clone();
    eprintln!(
        "{refused} connections refused, {} log lines: {lines:?}",
        lines.len()
    );
    assert!(
        refused > 1000 && lines.len() <= 2,
        "{refused} connections refused, {} log lines: {lines:?}",
        lines.len()
    );
}
