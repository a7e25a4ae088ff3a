//! Talking to the real deployd on lab hosts: signed requests made with the
//! protocol crate, the HTTP API read with a plain client, the event stream
//! parsed as Server-Sent Events.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deployd_lab::http::Pace;
use deployd_lab::{BulkPaths, Lab, LabOptions, Node, ToyFlake, TrustedDeployKey};
use deployd_protocol::api::{DeployRecord, DeployState, StatusResponse};
use deployd_protocol::{Action, DeployId, DeployRequest, Message, Request, SecretKey};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A fresh key named `name`.
pub fn key(name: &str) -> SecretKey {
    SecretKey::generate(name.parse().expect("key name")).expect("random source")
}

/// The key as a host should trust it, with all permissions or only `may`.
pub fn trusted(key: &SecretKey, may: Option<&[&str]>) -> TrustedDeployKey {
    TrustedDeployKey {
        public_key: key.public_key().to_string(),
        may: may.map(|may| may.iter().map(|p| (*p).to_owned()).collect()),
    }
}

/// Configures and starts deployd on every host of `lab`, trusting `keys`.
pub fn start_fleet(lab: &mut Lab, keys: &[TrustedDeployKey]) {
    for host in lab.hosts().to_vec() {
        lab.write_deployd_config(&host, keys, "").expect("config");
        lab.start_deployd(&host).expect("deployd up");
    }
}

/// A signed `deploy` of `system` to `host`, issued now, with
/// `retry_failed`: these tests send a system again after making it fail
/// on purpose (a cache down, then mended), which quarantine would refuse;
/// quarantine itself is tested by `quarantine_on_the_host`, through push.
pub fn deploy_message(host: &Node, id: &str, system: &str, action: Action) -> Message {
    let mut request = DeployRequest::new(
        id.parse::<DeployId>().expect("deploy id"),
        system.parse().expect("store path"),
        action,
    )
    .expect("random source");
    request.retry_failed = true;
    Message::new(
        host.name.parse().expect("host"),
        Request::Deploy(request),
        now(),
        300,
    )
}

/// The HTTP client the tests use.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// POSTs `body` to `url`; returns the status and the JSON answer.
pub fn post(url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = http().post(url).body(body).send().expect("POST");
    let status = response.status().as_u16();
    (status, response.json().expect("JSON answer"))
}

/// GETs `url`; returns the status and the JSON answer.
pub fn get(url: &str) -> (u16, serde_json::Value) {
    let response = http().get(url).send().expect("GET");
    let status = response.status().as_u16();
    (status, response.json().expect("JSON answer"))
}

/// Sends a deploy and expects it accepted; returns its id.
pub fn deploy(lab: &Lab, host: &Node, message: &Message, key: &SecretKey) -> String {
    let url = format!("{}/v1/deploy", lab.deployd_url(host));
    let (status, answer) = post(&url, message.sign(&[key]).to_json());
    assert_eq!(status, 202, "{answer}");
    answer["deploy_id"].as_str().expect("deploy_id").to_owned()
}

/// A deploy's record.
pub fn record(lab: &Lab, host: &Node, id: &str) -> DeployRecord {
    let (status, answer) = get(&format!("{}/v1/deploys/{id}", lab.deployd_url(host)));
    assert_eq!(status, 200, "{answer}");
    serde_json::from_value(answer).expect("a deploy record")
}

/// Waits until deploy `id` has ended; returns its record.
pub fn wait_for_end(lab: &Lab, host: &Node, id: &str, timeout: Duration) -> DeployRecord {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = http()
            .get(format!("{}/v1/deploys/{id}", lab.deployd_url(host)))
            .send()
        {
            if let Ok(record) = response.json::<DeployRecord>() {
                if record.state.is_final() {
                    return record;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "deploy {id} on {} did not end",
            host.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until deploy `id` is in `state`.
pub fn wait_for_state(lab: &Lab, host: &Node, id: &str, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        // The daemon may be restarting: a refused connection is not an answer.
        let answer: serde_json::Value = http()
            .get(format!("{}/v1/deploys/{id}", lab.deployd_url(host)))
            .send()
            .and_then(|response| response.json())
            .unwrap_or_default();
        if answer["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "deploy {id} never reached {state}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The systems whose toy switch ran on `host`, oldest first.
pub fn switched_systems(host: &Node) -> Vec<String> {
    host.switch_log()
        .expect("switch log")
        .into_iter()
        .map(|run| run.system)
        .collect()
}

/// deployd's journal on `host`, its messages alone.
pub fn journal(host: &Node) -> String {
    let output = host
        .command("journalctl", ["-u", "deployd", "--no-pager", "-o", "cat"])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The host's `/v1/status`.
pub fn status(lab: &Lab, host: &Node) -> StatusResponse {
    let (code, answer) = get(&format!("{}/v1/status", lab.deployd_url(host)));
    assert_eq!(code, 200, "{answer}");
    serde_json::from_value(answer).expect("a status answer")
}

/// Reads a deploy's whole event stream: (event name, data) pairs, until the
/// server ends it.
pub fn events(lab: &Lab, host: &Node, id: &str) -> Vec<(String, String)> {
    let response = http()
        .get(format!("{}/v1/deploys/{id}/events", lab.deployd_url(host)))
        .send()
        .expect("GET events");
    assert_eq!(response.status().as_u16(), 200);
    let mut events = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    for line in BufReader::new(response).lines() {
        let line = line.expect("stream line");
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        } else if line.is_empty() && !name.is_empty() {
            events.push((std::mem::take(&mut name), std::mem::take(&mut data)));
        }
    }
    events
}

/// The setup most tests share: a lab of one host whose deployd trusts
/// `ops-1` for everything.
pub struct OneHost {
    /// The lab.
    pub lab: Lab,
    /// The trusted deploy key.
    pub ops: SecretKey,
    /// The host.
    pub host: Node,
}

impl OneHost {
    /// Sends a signed confirm of deploy `id`; the HTTP status of its answer.
    pub fn confirm(&self, id: &str) -> u16 {
        let deploy_id: DeployId = id.parse().expect("id");
        let message = Message::new(
            self.host.name.parse().expect("host"),
            Request::Confirm(deployd_protocol::DeployRef::new(deploy_id).expect("nonce")),
            now(),
            60,
        );
        let url = format!(
            "{}/v1/deploys/{id}/confirm",
            self.lab.deployd_url(&self.host)
        );
        post(&url, message.sign(&[&self.ops]).to_json()).0
    }

    /// Makes the lab and starts deployd on its host.
    pub fn up() -> OneHost {
        OneHost::with_config("")
    }

    /// Like [`OneHost::up`], with `extra` TOML at the end of deployd's config.
    pub fn with_config(extra: &str) -> OneHost {
        OneHost::with_options(&super::lab_options(1), extra)
    }

    /// Like [`OneHost::up`] on a machine where systemd is not PID 1: deployd
    /// runs under `lab supervise`, and switches as detached processes.
    pub fn without_systemd() -> OneHost {
        let options = LabOptions {
            systemd: false,
            ..super::lab_options(1)
        };
        OneHost::with_options(&options, "")
    }

    fn with_options(options: &LabOptions, extra: &str) -> OneHost {
        let mut lab = Lab::up(options).expect("lab up");
        let ops = key("ops-1");
        let host = lab.hosts()[0].clone();
        lab.write_deployd_config(&host, &[trusted(&ops, None)], extra)
            .expect("config");
        lab.start_deployd(&host).expect("deployd up");
        OneHost { lab, ops, host }
    }

    /// The host's system at `rev`, built and published to the cache.
    pub fn system_at(&self, rev: &str) -> String {
        self.lab.build_and_publish(rev).expect("build")[&self.host.name].clone()
    }

    /// The host's system at the flake's last commit, built and published.
    pub fn head_system(&self) -> String {
        self.system_at(&self.lab.flake().head().expect("head"))
    }

    /// Deploys the system of the flake's last commit with `switch`, checks
    /// that it succeeded, and returns it: where most tests begin.
    pub fn deploy_head(&self) -> String {
        let system = self.head_system();
        let record = self.deploy_to_end("first", &system, Action::Switch);
        assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
        system
    }

    /// Commits what `change` makes of the flake (one of `ToyFlake`'s
    /// `commit_*`), builds and publishes it, and returns the host's system.
    pub fn commit_system(
        &mut self,
        change: impl FnOnce(&mut ToyFlake, &str) -> anyhow::Result<String>,
    ) -> String {
        let name = self.host.name.clone();
        let rev = change(self.lab.flake_mut(), &name).expect("commit");
        self.system_at(&rev)
    }

    /// Sends a signed deploy of `system` and waits for its end.
    pub fn deploy_to_end(&self, id: &str, system: &str, action: Action) -> DeployRecord {
        let id = deploy(
            &self.lab,
            &self.host,
            &deploy_message(&self.host, id, system, action),
            &self.ops,
        );
        wait_for_end(&self.lab, &self.host, &id, Duration::from_secs(60))
    }
}

/// A system for `host` whose fetch takes about 20 s: ten paths of 200 kB,
/// published, then served by a cache slowed to 100 kB/s.
pub fn slow_to_fetch(lab: &mut Lab, host: &Node) -> String {
    let rev = lab
        .flake_mut()
        .commit_large_closure(BulkPaths {
            paths: 10,
            bytes_per_path: 200_000,
            levels: 1,
        })
        .expect("commit");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    lab.stop_cache().expect("stop cache");
    let pace = Pace {
        bytes_per_second: Some(100_000),
        ..Pace::default()
    };
    lab.start_cache(pace).expect("slow cache");
    system
}

/// Waits until deployd runs on `host` under another pid than `before` (its
/// supervisor, or systemd, brought it back) and answers.
pub fn wait_for_deployd_restart(lab: &Lab, host: &Node, before: u32) {
    let url = format!("{}/healthz", lab.deployd_url(host));
    let restarted = super::wait_until(Duration::from_secs(30), || {
        lab.deployd_pid(host).is_some_and(|now| now != before)
            && reqwest::blocking::get(&url).is_ok_and(|answer| answer.status().is_success())
    });
    assert!(
        restarted,
        "deployd was not brought back (pid {:?})",
        lab.deployd_pid(host)
    );
}
