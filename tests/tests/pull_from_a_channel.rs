//! Hosts that nobody can reach still deploy (docs/src/design/channels.md):
//! a host whose deployd listens on its own loopback only pulls signed
//! desired states from a channel, here a folder served over HTTP by the
//! lab's cache server, or the channel receiver that stands in for push
//! serve. The states are signed in the test with the protocol crate.
//!
//! Shown: a state published while the host's deployd was stopped is
//! applied when it starts, once (a restart applies nothing again); a newer
//! state is applied; an older one published later, one for another host,
//! an expired one and one signed by a key that may only read change
//! nothing; the host key is in `/v1/status`, and the deploy's reports reach
//! a push serve channel signed with it.

mod support;

use std::time::Duration;

use deployd_lab::channel_receiver::ChannelReceiver;
use deployd_lab::{Lab, LabOptions, Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState, StatusResponse};
use deployd_protocol::{Action, DeployRequest, DesiredState, PublicKey, SecretKey};
use support::deployd::{key, now, trusted};
use support::wait_until;

/// A lab host whose deployd pulls from `channel` every second and listens
/// on its loopback only; `ops-1` may do everything, `reader-1` only read.
struct PullingHost {
    lab: Lab,
    host: Node,
    ops: SecretKey,
    reader: SecretKey,
}

impl PullingHost {
    fn up() -> PullingHost {
        let options = LabOptions {
            systemd: false,
            ..support::lab_options(1)
        };
        let lab = Lab::up(&options).expect("lab up");
        let host = lab.hosts()[0].clone();
        PullingHost {
            lab,
            host,
            ops: key("ops-1"),
            reader: key("reader-1"),
        }
    }

    /// Writes the host's config, pulling from `channel`.
    fn configure(&self, channel: &str) {
        let keys = [
            trusted(&self.ops, None),
            trusted(&self.reader, Some(&["read"])),
        ];
        let pull = format!("\n[pull]\nchannels = [\"{channel}\"]\ninterval_s = 1\n");
        self.lab
            .write_deployd_config(&self.host, &keys, &pull)
            .expect("config");
        self.lab.listen_inside_only(&self.host).expect("config");
    }

    fn start(&mut self) {
        let host = self.host.clone();
        self.lab
            .start_unreachable_deployd(&host)
            .expect("deployd up, on the host's loopback only");
    }

    fn stop(&mut self) {
        let host = self.host.clone();
        self.lab.stop_deployd(&host).expect("deployd stopped");
    }

    fn status(&self) -> StatusResponse {
        let text = self
            .lab
            .ask_deployd_inside(&self.host, "/v1/status")
            .expect("status");
        serde_json::from_str(&text).expect("a status answer")
    }

    /// The host's system at the flake's head, built and published.
    fn head_system(&self) -> String {
        let head = self.lab.flake().head().expect("head");
        self.lab.build_and_publish(&head).expect("build")[&self.host.name].clone()
    }

    /// Every deploy record on the host, read from its state directory.
    fn records(&self) -> Vec<DeployRecord> {
        self.host.deploy_records().expect("deploy records")
    }

    /// Waits until deploy `id` is recorded as ended; returns its record.
    fn wait_for_end(&self, id: &str) -> DeployRecord {
        let mut ended = None;
        let done = wait_until(Duration::from_secs(120), || {
            ended = self
                .records()
                .into_iter()
                .find(|record| record.deploy_id.as_str() == id && record.state.is_final());
            ended.is_some()
        });
        assert!(done, "deploy {id} did not end: {}", self.log());
        ended.expect("ended")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.host.root.join("deployd.log")).unwrap_or_default()
    }
}

/// A desired state `sequence` deploying `system` (switch) as deploy `id`,
/// for `host`, issued `age_s` ago, valid for `lifetime_s`, signed by `key`.
struct Publish<'a> {
    host: &'a str,
    id: &'a str,
    system: &'a str,
    sequence: u64,
    age_s: u64,
    lifetime_s: u64,
}

impl Publish<'_> {
    fn signed(&self, key: &SecretKey) -> Vec<u8> {
        let request = DeployRequest::new(
            self.id.parse().expect("id"),
            self.system.parse().expect("store path"),
            Action::Switch,
        )
        .expect("random source");
        let state = DesiredState::new(
            self.host.parse().expect("host"),
            request,
            self.sequence,
            now() - self.age_s,
            self.lifetime_s,
        );
        state.sign(&[key]).to_json()
    }
}

fn publish(folder: &std::path::Path, host: &str, bytes: &[u8]) {
    let hosts = folder.join("hosts");
    std::fs::create_dir_all(&hosts).expect("channel folder");
    let temporary = hosts.join(format!(".{host}.json.tmp"));
    std::fs::write(&temporary, bytes).expect("write state");
    std::fs::rename(&temporary, hosts.join(format!("{host}.json"))).expect("publish");
}

#[test]
fn a_host_nobody_reaches_applies_each_new_state_once_and_nothing_else() {
    let mut one = PullingHost::up();
    let folder = one.lab.cache_dir().join("channel");
    let channel = format!("{}/channel", one.lab.cache_url());
    one.configure(&channel);
    let host = one.host.name.clone();
    let first = one.head_system();

    // Published while the host's deployd does not run: applied at start.
    let state = Publish {
        host: &host,
        id: "pulled-1",
        system: &first,
        sequence: 1,
        age_s: 0,
        lifetime_s: 86400,
    };
    publish(&folder, &host, &state.signed(&one.ops));
    one.start();
    let record = one.wait_for_end("pulled-1");
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(first.clone()));
    assert!(
        one.log().contains(&format!(
            "channel {channel}: applying desired state 1 (pulled-1)"
        )),
        "{}",
        one.log()
    );

    // Restarted: the same state is not applied again.
    one.stop();
    one.start();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(one.records().len(), 1, "{:?}", one.records());
    let generation = one.host.profile_generation();

    // A newer state, published while stopped.
    one.stop();
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.lab.build_and_publish(&rev).expect("build")[&host].clone();
    assert_ne!(first, second);
    let newer = Publish {
        id: "pulled-3",
        system: &second,
        sequence: 3,
        ..state
    };
    publish(&folder, &host, &newer.signed(&one.ops));
    one.start();
    let record = one.wait_for_end("pulled-3");
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(one.host.current_system(), Some(second.clone()));
    let generation_after = one.host.profile_generation();
    assert_ne!(generation_after, generation);

    // What must change nothing: an older sequence, another host's state,
    // an expired one, one by a key that may only read.
    let older = Publish {
        id: "older-2",
        system: &first,
        sequence: 2,
        ..state
    };
    let other_host = Publish {
        host: "elsewhere",
        id: "other-4",
        sequence: 4,
        ..older
    };
    let expired = Publish {
        id: "expired-4",
        sequence: 4,
        age_s: 7200,
        lifetime_s: 3600,
        ..older
    };
    let by_reader = Publish {
        id: "reader-4",
        sequence: 4,
        ..older
    };
    for (what, bytes) in [
        ("an older state", older.signed(&one.ops)),
        ("another host's state", other_host.signed(&one.ops)),
        ("an expired state", expired.signed(&one.ops)),
        (
            "a state signed by a read-only key",
            by_reader.signed(&one.reader),
        ),
    ] {
        publish(&folder, &host, &bytes);
        std::thread::sleep(Duration::from_secs(4));
        let records = one.records();
        assert_eq!(records.len(), 2, "{what}: {records:?}\n{}", one.log());
        assert_eq!(one.host.current_system(), Some(second.clone()), "{what}");
        assert_eq!(one.host.profile_generation(), generation_after, "{what}");
    }
    let log = one.log();
    for code in ["replayed", "wrong_host", "expired", "forbidden"] {
        assert!(
            log.contains(&format!("refused its desired state ({code})")),
            "no {code} refusal in\n{log}"
        );
    }
    // Each refused once, not at every poll.
    assert_eq!(log.matches("refused its desired state").count(), 4, "{log}");
    let metrics = one
        .lab
        .ask_deployd_inside(&one.host, "/metrics")
        .expect("metrics");
    assert!(
        metrics.contains("deployd_pull_polls_total{result=\"refused\"} 4"),
        "{metrics}"
    );
}

#[test]
fn a_pulling_host_reports_to_a_push_serve_channel_signed_with_its_host_key() {
    let mut one = PullingHost::up();
    let folder = one.lab.dir().join("serve-channel");
    let gateway = one.lab.state().slot.gateway();
    let receiver = ChannelReceiver::start(&folder, (gateway, 0).into()).expect("receiver");
    one.configure(&receiver.url());
    one.start();
    let host = one.host.name.clone();

    let host_key = one.status().host_key.expect("host_key in /v1/status");
    let pinned: PublicKey = host_key.parse().expect("a public key");
    assert_eq!(pinned.name().as_str(), format!("{host}-host-1"));
    let key_file = one.host.outside(DEPLOYD_STATE_DIR).join("host-key.secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("host key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    receiver.pin(&host, pinned);

    let system = one.head_system();
    let state = Publish {
        host: &host,
        id: "served-1",
        system: &system,
        sequence: 1,
        age_s: 0,
        lifetime_s: 86400,
    };
    publish(&folder, &host, &state.signed(&one.ops));
    let record = one.wait_for_end("served-1");
    assert_eq!(record.state, DeployState::Succeeded);
    let reported = wait_until(Duration::from_secs(30), || {
        receiver
            .reports()
            .iter()
            .any(|report| report.record.state == DeployState::Succeeded)
    });
    assert!(reported, "no final report: {}", one.log());
    let reports = receiver.reports();
    assert!(
        reports
            .iter()
            .all(|report| report.sequence == Some(1)
                && report.record.deploy_id.as_str() == "served-1")
    );
    assert_eq!(receiver.refused(), 0);
    assert_eq!(one.host.current_system(), Some(system));
    // The final report acknowledged: no report is pending any more (the
    // host forgets it once the channel's answer is in, just after the
    // receiver kept it).
    let pending = || {
        std::fs::read_dir(one.host.outside(DEPLOYD_STATE_DIR).join("pull"))
            .expect("pull state")
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".report.json")
            })
            .count()
    };
    let forgotten = wait_until(Duration::from_secs(10), || pending() == 0);
    assert!(forgotten, "{} reports pending: {}", pending(), one.log());
}
