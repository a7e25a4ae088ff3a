//! `systemctl reload deployd` is a SIGHUP: the real `deployd` reads its
//! config file again and puts it in force (a newly trusted key is accepted,
//! a removed one refused), and refuses a config `check-config` would refuse,
//! keeping the one in force.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use deployd_protocol::{Action, SecretKey};
use support::running::Running;
use support::{config_text, deploy_envelope, key, now, stand_in_nix_store};

/// The deploys this test sends.
trait Deploys {
    fn deploy_status(&self, signer: &SecretKey, id: &str) -> String;
    fn wait_for_answer(&self, signer: &SecretKey, prefix: &str, status: &str);
}

impl Deploys for Running {
    /// The HTTP status of a deploy signed by `signer` (a new id each time).
    fn deploy_status(&self, signer: &SecretKey, id: &str) -> String {
        let body = deploy_envelope(signer, id, (now(), 60), Action::Switch);
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        write!(
            stream,
            "POST /v1/deploy HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        )
        .expect("send");
        stream.write_all(&body).expect("send body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        answer.split_whitespace().nth(1).unwrap_or("").to_owned()
    }

    /// Waits until `deploy` (signed by `signer`, ids `prefix-N`) is answered
    /// `status`, trying again while the reload is on its way; then waits for
    /// the deploy it started, if any, to end (its fetch fails at once).
    fn wait_for_answer(&self, signer: &SecretKey, prefix: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for attempt in 0.. {
            let answered = self.deploy_status(signer, &format!("{prefix}-{attempt}"));
            if answered == status {
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix}: answered {answered}, not {status}; log: {:?}",
                self.lines.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_reload_puts_a_new_key_in_force_and_refuses_a_bad_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ops, newcomer) = (key("ops-1"), key("ops-2"));
    // Every fetch fails at once: a deploy that is accepted ends quickly.
    let nix_store = stand_in_nix_store(dir.path(), "#!/bin/sh\nexit 1\n");
    let config = dir.path().join("config.toml");
    // Each deploy is of the same system and fails: no quarantine here.
    let top = "listen = \"127.0.0.1:0\"\nquarantine_s = 0\n";
    std::fs::write(
        &config,
        config_text(dir.path(), &ops, top, Some(&nix_store)),
    )
    .expect("config");
    let daemon = Running::start(&config);
    daemon.wait_for_answer(&ops, "before", "202");
    assert_eq!(daemon.deploy_status(&newcomer, "not-yet"), "401");

    // The newcomer's key replaces ops-1's.
    std::fs::write(
        &config,
        config_text(dir.path(), &newcomer, top, Some(&nix_store)),
    )
    .expect("config");
    daemon.hang_up();
    daemon.wait_for_answer(&newcomer, "after", "202");
    assert_eq!(daemon.deploy_status(&ops, "removed"), "401");

    // A config check-config refuses (an unknown key) is refused; the one in
    // force stays.
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("surprise = true\n{good}")).expect("config");
    daemon.hang_up();
    let deadline = Instant::now() + Duration::from_secs(20);
    // The refusal and its cause (TOML's error spans lines).
    let refused = || {
        let log = daemon.lines.lock().expect("lines").join("\n");
        log.contains("refused the changed") && log.contains("unknown field `surprise`")
    };
    while !refused() {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {:?}",
            daemon.lines.lock().expect("lines")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.wait_for_answer(&newcomer, "kept", "202");
    assert_eq!(daemon.deploy_status(&ops, "still-removed"), "401");
}
