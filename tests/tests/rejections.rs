//! Every error code of the API, each produced by a real request to the real
//! deployd on a lab host, and after each rejected request the host is
//! unchanged: profile, generations, running system, switch record and every
//! file of deployd's state.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use deployd_lab::{Lab, Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, Envelope, Message, Request, SecretKey, PAYLOAD_TYPE};
use serde_json::json;
use support::deployd::{
    deploy, deploy_message, get, key, now, post, start_fleet, trusted, wait_for_end, wait_for_state,
};
use support::lab_options;

/// Everything on the host a deploy could change.
fn snapshot(host: &Node) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["/nix/var/nix/profiles", DEPLOYD_STATE_DIR, "/var/lib/lab"] {
        collect(&host.outside(dir), &mut files);
    }
    let current = host.current_system().unwrap_or_default();
    files.insert("/run/current-system".into(), current.into_bytes());
    files
}

fn collect(dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let key = path.to_string_lossy().into_owned();
        if let Ok(target) = std::fs::read_link(&path) {
            files.insert(key, target.to_string_lossy().into_owned().into_bytes());
        } else if path.is_dir() {
            collect(&path, files);
        } else {
            files.insert(key, std::fs::read(&path).unwrap_or_default());
        }
    }
}

/// Fails naming the files that differ, not dumping them.
#[track_caller]
fn assert_unchanged(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .collect();
    assert!(changed.is_empty(), "{what} changed the host: {changed:?}");
}

struct Case<'a> {
    lab: &'a Lab,
    host: &'a Node,
}

impl Case<'_> {
    /// Sends `body` to `POST /v1/deploy`, expects `status` and `code`, and
    /// checks that nothing on the host changed.
    fn refused(&self, what: &str, body: Vec<u8>, status: u16, code: &str) {
        let before = snapshot(self.host);
        let url = format!("{}/v1/deploy", self.lab.deployd_url(self.host));
        let (got_status, answer) = post(&url, body);
        assert_eq!(
            (got_status, answer["error"].as_str()),
            (status, Some(code)),
            "{what}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {answer}"
        );
        assert_unchanged(&before, &snapshot(self.host), what);
    }
}

impl Case<'_> {
    /// Announces a body one byte over the envelope limit and expects
    /// `payload_too_large` before sending any of it (deployd answers
    /// without reading it; a client that went on writing would race the
    /// connection's close), and the host unchanged.
    fn refused_announced_oversize(&self) {
        let before = snapshot(self.host);
        let url = self.lab.deployd_url(self.host);
        let address = url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let length = deployd_protocol::MAX_ENVELOPE_BYTES + 1;
        write!(
            stream,
            "POST /v1/deploy HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        .expect("send the headers");
        let mut answer = Vec::new();
        if let Err(error) = stream.read_to_end(&mut answer) {
            assert!(!answer.is_empty(), "no answer: {error}");
        }
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").expect("headers");
        assert!(head.starts_with("HTTP/1.1 413"), "{answer}");
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON answer");
        assert_eq!(body["error"], "payload_too_large", "{answer}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_unchanged(&before, &snapshot(self.host), "a huge body");
    }
}

fn signed(message: &Message, key: &SecretKey) -> Vec<u8> {
    message.sign(&[key]).to_json()
}

fn with_nonce_of(message: &Message, other: &Message) -> Message {
    let mut message = message.clone();
    if let (Request::Deploy(this), Request::Deploy(that)) = (&mut message.request, &other.request) {
        this.nonce = that.nonce.clone();
    }
    message
}

#[test]
fn every_error_code_from_a_real_request_and_the_host_unchanged() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let (ops, reader, stranger) = (key("ops-1"), key("reader-1"), key("stranger-1"));
    start_fleet(
        &mut lab,
        &[trusted(&ops, None), trusted(&reader, Some(&["read"]))],
    );
    let host = lab.hosts()[0].clone();
    let rev = lab.flake().head().expect("head");
    let system = lab.build_and_publish(&rev).expect("build")[&host.name].clone();
    let first = deploy_message(&host, "first", &system, Action::Switch);
    let first_bytes = signed(&first, &ops);
    let url = format!("{}/v1/deploy", lab.deployd_url(&host));
    assert_eq!(post(&url, first_bytes.clone()).0, 202);
    assert_eq!(
        wait_for_end(&lab, &host, "first", Duration::from_secs(60)).state,
        DeployState::Succeeded
    );
    let new_rev = lab.flake_mut().commit_changed_system().expect("commit");
    let new_system = lab.build_and_publish(&new_rev).expect("build")[&host.name].clone();
    let case = Case {
        lab: &lab,
        host: &host,
    };
    let fresh = |id: &str| deploy_message(&host, id, &system, Action::Switch);

    // The very same envelope again is a retry: the same deploy, nothing new.
    let before = snapshot(&host);
    let (status, answer) = post(&url, first_bytes.clone());
    assert_eq!(
        (status, answer["deploy_id"].as_str()),
        (202, Some("first")),
        "{answer}"
    );
    assert_unchanged(&before, &snapshot(&host), "a retry");

    case.refused("garbage", b"{".to_vec(), 400, "bad_request");
    case.refused_announced_oversize();
    case.refused(
        "an unknown key",
        signed(&fresh("u"), &stranger),
        401,
        "unknown_key",
    );
    let mut forged: serde_json::Value =
        serde_json::from_slice(&signed(&fresh("f"), &stranger)).expect("json");
    forged["signatures"][0]["keyid"] = json!("ops-1");
    case.refused(
        "a forged signature",
        serde_json::to_vec(&forged).expect("json"),
        401,
        "bad_signature",
    );
    case.refused(
        "a read-only key",
        signed(&fresh("r"), &reader),
        403,
        "forbidden",
    );
    let mut elsewhere = fresh("w");
    elsewhere.host = "kelyus".parse().expect("host");
    case.refused("another host", signed(&elsewhere, &ops), 403, "wrong_host");
    let old = Message::new(
        host.name.parse().expect("host"),
        fresh("o").request,
        now() - 3600,
        300,
    );
    case.refused("an old message", signed(&old, &ops), 403, "expired");
    let future = Message::new(
        host.name.parse().expect("host"),
        fresh("n").request,
        now() + 3600,
        300,
    );
    case.refused(
        "a future message",
        signed(&future, &ops),
        403,
        "not_yet_valid",
    );
    case.refused(
        "a reused nonce",
        signed(&with_nonce_of(&fresh("second"), &first), &ops),
        409,
        "replayed",
    );
    case.refused(
        "a reused deploy id",
        signed(&fresh("first"), &ops),
        409,
        "replayed",
    );
    // Issued before the active deploy, valid long enough not to expire first.
    let older = Message::new(
        host.name.parse().expect("host"),
        fresh("older").request,
        first.issued_at - 1,
        900,
    );
    case.refused("an older request", signed(&older, &ops), 409, "downgrade");
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fresh("p").to_payload_bytes()).expect("json");
    payload["store_path"] = json!("/nix/store/../../etc/shadow");
    let envelope = Envelope::sign(
        PAYLOAD_TYPE,
        serde_json::to_vec(&payload).expect("json"),
        &[&ops],
    );
    case.refused(
        "a path outside the store",
        envelope.to_json(),
        422,
        "invalid_store_path",
    );

    let before = snapshot(&host);
    let (status, answer) = get(&format!(
        "{}/v1/deploys/no-such-deploy",
        lab.deployd_url(&host)
    ));
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    assert_unchanged(&before, &snapshot(&host), "a missing deploy");

    // busy: a slow switch of a new system is running.
    host.set_switch_delay(4).expect("delay");
    deploy(
        &lab,
        &host,
        &deploy_message(&host, "slow", &new_system, Action::Switch),
        &ops,
    );
    wait_for_state(&lab, &host, "slow", "activating", Duration::from_secs(30));
    let queued = deploy_message(&host, "queued", &new_system, Action::Test);
    let (status, answer) = post(&url, signed(&queued, &ops));
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("busy")),
        "{answer}"
    );
    assert_eq!(
        get(&format!("{}/v1/deploys/queued", lab.deployd_url(&host))).0,
        404
    );
    wait_for_end(&lab, &host, "slow", Duration::from_secs(60));
    host.set_switch_delay(0).expect("no delay");
    // Refused as busy, its nonce was not spent: the same envelope now goes through.
    let (status, answer) = post(&url, signed(&queued, &ops));
    assert_eq!(status, 202, "{answer}");
    wait_for_end(&lab, &host, "queued", Duration::from_secs(60));

    // internal: the nonce file cannot be replaced (a directory stands there).
    let nonces = host.outside(&format!("{DEPLOYD_STATE_DIR}/nonces.json"));
    std::fs::remove_file(&nonces).expect("remove nonces");
    std::fs::create_dir(&nonces).expect("block nonces");
    std::fs::write(nonces.join("keep"), "").expect("non-empty");
    case.refused(
        "a broken state directory",
        signed(&fresh("broken"), &ops),
        500,
        "internal",
    );
    let (_, answer) = post(&url, signed(&fresh("broken-2"), &ops));
    let message = answer["message"].as_str().expect("message");
    assert!(
        !message.contains("nonces"),
        "an internal error leaked its cause: {message}"
    );
}
