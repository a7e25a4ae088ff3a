//! The stand-in against a small hook receiver and the real `git`, on
//! loopback only: each forge's hooks (headers, signature, body) for a push,
//! a tag, a deletion and its test delivery; the status APIs; git over HTTP
//! with a push that sends the hook.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sign::hmac_sha256_hex;
use super::*;
use crate::run::{run, stdout_text};

const SECRET: &str = "hook-secret";
const TOKEN: &str = "api-token";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A hook receiver answering 202 to everything; stops on drop.
struct Receiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (log, stop) = (Arc::clone(&received), Arc::clone(&stopping));
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = read_request(stream, &log);
                }
            }
        });
        Receiver {
            address,
            received,
            stopping,
            thread: Some(thread),
        }
    }

    fn url(&self, kind: ForgeKind) -> String {
        format!("http://{}/v1/hooks/{kind}", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits until `count` requests have arrived.
    fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, logs it, then answers 202 (logged first, so a test
/// that has the answer sees the request).
fn read_request(stream: TcpStream, log: &Mutex<Vec<Received>>) -> Option<()> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut writer = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    log.lock().expect("log").push(Received {
        path,
        headers,
        body,
    });
    let answer = "HTTP/1.1 202 Accepted\r\nContent-Length: 8\r\nConnection: close\r\n\r\naccepted";
    writer.write_all(answer.as_bytes()).ok()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Mira Okafor",
            "-c",
            "user.email=mira@example.org",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args))
    .expect("git");
    stdout_text(&output)
}

/// A work tree on `main` with two commits; the second's id.
fn repository(dir: &Path) -> (PathBuf, String, String) {
    let path = dir.join("fleet");
    std::fs::create_dir_all(path.join("hosts")).expect("mkdir");
    git(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("flake.nix"), "{ }\n").expect("write");
    git(&path, &["add", "."]);
    git(&path, &["commit", "-q", "-m", "The fleet"]);
    let first = git(&path, &["rev-parse", "HEAD"]);
    std::fs::write(path.join("hosts/sambirano.nix"), "{ }\n").expect("write");
    git(&path, &["add", "."]);
    git(
        &path,
        &["commit", "-q", "-m", "sambirano: a host\n\nWith a body."],
    );
    let second = git(&path, &["rev-parse", "HEAD"]);
    (path, first, second)
}

struct Setup {
    _dir: tempfile::TempDir,
    repository: PathBuf,
    first: String,
    second: String,
    receiver: Receiver,
    forge: ForgeStandIn,
}

fn setup(kind: ForgeKind) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let (repository, first, second) = repository(dir.path());
    let receiver = Receiver::start();
    let forge = ForgeStandIn::start(ForgeOptions {
        kind,
        repository: repository.clone(),
        owner_repo: "ops/fleet".to_owned(),
        webhook_url: receiver.url(kind),
        secret: SECRET.to_owned(),
        token: TOKEN.to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
    })
    .expect("start");
    Setup {
        _dir: dir,
        repository,
        first,
        second,
        receiver,
        forge,
    }
}

/// Checks the signature or token the forge puts on `request`.
fn assert_signed(kind: ForgeKind, request: &Received) {
    let hmac = hmac_sha256_hex(SECRET.as_bytes(), &request.body);
    let header = |name| request.header(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(header("Content-Type"), "application/json");
    match kind {
        ForgeKind::GitHub => {
            assert_eq!(header("X-Hub-Signature-256"), format!("sha256={hmac}"));
            assert!(header("User-Agent").starts_with("GitHub-Hookshot/"));
            assert_eq!(header("X-GitHub-Delivery").len(), 36);
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            assert_eq!(header("X-Gitea-Signature"), hmac);
            assert_eq!(header("X-Hub-Signature-256"), format!("sha256={hmac}"));
            assert_eq!(header("X-GitHub-Event"), header("X-Gitea-Event"));
            assert_eq!(header("X-GitHub-Delivery"), header("X-Gitea-Delivery"));
            if kind == ForgeKind::Forgejo {
                assert_eq!(header("X-Forgejo-Signature"), hmac);
                assert_eq!(header("X-Forgejo-Event"), header("X-Gitea-Event"));
                assert_eq!(header("X-Forgejo-Delivery"), header("X-Gitea-Delivery"));
            } else {
                assert!(request.header("X-Forgejo-Event").is_none());
            }
        }
        ForgeKind::GitLab => {
            assert_eq!(header("X-Gitlab-Token"), SECRET);
            assert!(header("User-Agent").starts_with("GitLab/"));
            assert_eq!(header("Idempotency-Key").len(), 36);
            assert!(request.header("X-Gitlab-Event-UUID").is_some());
        }
    }
}

fn event_of(kind: ForgeKind, request: &Received) -> String {
    request
        .header(kind.event_header())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn kinds_parse_and_print_as_the_config_names_them() {
    for kind in ForgeKind::ALL {
        assert_eq!(kind.to_string().parse::<ForgeKind>().expect("parse"), kind);
    }
    assert!("bitbucket".parse::<ForgeKind>().is_err());
}

#[test]
fn a_branch_push_is_each_forges_push_hook() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let push = PushEvent {
            reference: "refs/heads/main".into(),
            before: setup.first.clone(),
            after: setup.second.clone(),
        };
        let response = setup.forge.push_hook(&push).expect("hook");
        assert_eq!(response.status, 202, "{kind}");
        let received = setup.receiver.received();
        assert_eq!(received.len(), 1, "{kind}");
        let hook = &received[0];
        assert_eq!(hook.path, format!("/v1/hooks/{kind}"));
        assert_signed(kind, hook);
        let body = hook.json();
        assert_eq!(body["ref"], "refs/heads/main", "{kind}");
        assert_eq!(body["before"], setup.first.as_str(), "{kind}");
        assert_eq!(body["after"], setup.second.as_str(), "{kind}");
        let commits = body["commits"].as_array().expect("commits");
        assert_eq!(commits.len(), 1, "{kind}");
        assert_eq!(commits[0]["id"], setup.second.as_str(), "{kind}");
        assert_eq!(commits[0]["author"]["email"], "mira@example.org", "{kind}");
        let text = String::from_utf8_lossy(&hook.body).into_owned();
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, hook), "push");
                assert_eq!(body["created"], false);
                assert_eq!(body["deleted"], false);
                assert_eq!(body["forced"], false);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
                assert_eq!(
                    body["head_commit"]["message"],
                    "sambirano: a host\n\nWith a body."
                );
                assert_eq!(body["head_commit"]["added"][0], "hosts/sambirano.nix");
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
                assert!(!text.contains('\n'), "GitHub sends compact JSON");
                assert!(text.starts_with("{\"ref\":"), "{text}");
            }
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                assert_eq!(event_of(kind, hook), "push");
                assert_eq!(body["total_commits"], 1);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
                assert!(text.starts_with("{\n  \"ref\": "), "indented: {text}");
                assert!(
                    text.contains("\n  \"head_commit\": {\n    \"id\": "),
                    "{text}"
                );
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, hook), "Push Hook");
                assert_eq!(body["object_kind"], "push");
                assert_eq!(body["checkout_sha"], setup.second.as_str());
                assert_eq!(body["total_commits_count"], 1);
                assert_eq!(body["project"]["path_with_namespace"], "ops/fleet");
                assert_eq!(commits[0]["title"], "sambirano: a host");
                assert!(!text.contains('\n') || text.contains("\\n"), "compact");
            }
        }
        let deliveries = setup.forge.hook_deliveries();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].status, Some(202));
        assert_eq!(deliveries[0].after.as_deref(), Some(setup.second.as_str()));
        assert_eq!(deliveries[0].body, hook.body);
    }
}

#[test]
fn a_tag_push_and_a_forced_push_are_announced_as_the_forges_do() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let zero = setup.forge.zero_id().expect("zero");
        assert_eq!(zero.len(), 40);
        git(&setup.repository, &["tag", "v1", &setup.second]);
        let tag = PushEvent {
            reference: "refs/tags/v1".into(),
            before: zero.clone(),
            after: setup.second.clone(),
        };
        setup.forge.push_hook(&tag).expect("tag hook");
        let received = setup.receiver.wait_for(1);
        let body = received[0].json();
        assert_eq!(body["ref"], "refs/tags/v1", "{kind}");
        assert_eq!(body["before"], zero.as_str(), "{kind}");
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["created"], true);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Tag Push Hook");
                assert_eq!(body["object_kind"], "tag_push");
                assert_eq!(body["checkout_sha"], setup.second.as_str());
            }
            _ => assert_eq!(event_of(kind, &received[0]), "push"),
        }
        if kind == ForgeKind::GitHub {
            let forced = PushEvent {
                reference: "refs/heads/main".into(),
                before: setup.second.clone(),
                after: setup.first.clone(),
            };
            setup.forge.push_hook(&forced).expect("forced hook");
            let body = setup.receiver.wait_for(2)[1].json();
            assert_eq!(body["forced"], true);
        }
    }
}

#[test]
fn a_deletion_is_a_zero_push_or_a_delete_event() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let zero = setup.forge.zero_id().expect("zero");
        let branch = PushEvent {
            reference: "refs/heads/feature".into(),
            before: setup.second.clone(),
            after: zero.clone(),
        };
        setup.forge.push_hook(&branch).expect("branch deletion");
        let received = setup.receiver.received();
        assert_eq!(received.len(), 1, "{kind}: one hook for a deleted branch");
        let body = received[0].json();
        assert_signed(kind, &received[0]);
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["deleted"], true);
                assert_eq!(body["after"], zero.as_str());
                assert_eq!(body["head_commit"], Value::Null);
                assert_eq!(body["commits"], serde_json::json!([]));
            }
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                assert_eq!(event_of(kind, &received[0]), "delete");
                assert_eq!(body["ref"], "feature");
                assert_eq!(body["ref_type"], "branch");
                assert_eq!(body["pusher_type"], "user");
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Push Hook");
                assert_eq!(body["after"], zero.as_str());
                assert_eq!(body["checkout_sha"], Value::Null);
                assert_eq!(body["total_commits_count"], 0);
            }
        }
        if matches!(kind, ForgeKind::Gitea | ForgeKind::Forgejo) {
            let tag = PushEvent {
                reference: "refs/tags/v1".into(),
                before: setup.second.clone(),
                after: zero.clone(),
            };
            setup.forge.push_hook(&tag).expect("tag deletion");
            let received = setup.receiver.wait_for(3);
            assert_eq!(event_of(kind, &received[1]), "push");
            assert_eq!(received[1].json()["after"], zero.as_str());
            assert_eq!(event_of(kind, &received[2]), "delete");
            assert_eq!(received[2].json()["ref_type"], "tag");
        }
    }
}

#[test]
fn the_test_delivery_and_redelivery() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        setup.forge.ping().expect("ping");
        let received = setup.receiver.wait_for(1);
        assert_signed(kind, &received[0]);
        let body = received[0].json();
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "ping");
                assert!(body["zen"].is_string());
                assert!(body["hook_id"].is_number());
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Push Hook");
                assert_eq!(body["after"], setup.second.as_str());
                assert_eq!(body["commits"].as_array().map(Vec::len), Some(2));
            }
            _ => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["before"], setup.second.as_str());
                assert_eq!(body["after"], setup.second.as_str());
            }
        }
        let first = setup.forge.hook_deliveries().remove(0);
        setup.forge.redeliver(&first).expect("redeliver");
        let again = setup.receiver.wait_for(2);
        assert_eq!(again[1].body, again[0].body, "{kind}: the same bytes");
        let id = |request: &Received| request.header(kind.delivery_header()).map(str::to_owned);
        let same_id = id(&again[0]) == id(&again[1]);
        let keeps_id = matches!(kind, ForgeKind::GitHub | ForgeKind::GitLab);
        assert_eq!(same_id, keeps_id, "{kind}");
        let deliveries = setup.forge.hook_deliveries();
        assert!(deliveries[1].redelivery);
    }
}

#[test]
fn hand_made_hooks_for_negative_tests() {
    let setup = setup(ForgeKind::GitHub);
    for signature in [Signature::Wrong, Signature::Missing] {
        let hook = RawHook {
            event: "push".into(),
            body: b"{\"ref\":\"refs/heads/main\"}".to_vec(),
            signature,
            extra_headers: vec![("Content-Type".into(), "text/plain".into())],
        };
        setup.forge.send_hook(&hook).expect("sent");
    }
    let received = setup.receiver.wait_for(2);
    let right = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), &received[0].body)
    );
    let wrong = received[0].header("X-Hub-Signature-256").expect("signed");
    assert!(wrong.starts_with("sha256=") && wrong != right);
    assert_eq!(received[0].header("Content-Type"), Some("text/plain"));
    assert_eq!(received[1].header("X-Hub-Signature-256"), None);
    assert_eq!(received[1].header("X-Hub-Signature"), None);
}

fn post_status(forge: &ForgeStandIn, path: &str, auth: (&str, &str), body: &Value) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{}{path}", forge.api_url()))
        .header(auth.0, auth.1)
        .json(body)
        .send()
        .expect("status call");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn status_apis_record_calls_and_answer_as_the_forges() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let forge = &setup.forge;
        let sha = setup.second.as_str();
        let (path, auth, wrong): (String, (&str, String), (&str, &str)) = match kind {
            ForgeKind::GitHub => (
                format!("/repos/ops/fleet/statuses/{sha}"),
                ("Authorization", format!("Bearer {TOKEN}")),
                ("Authorization", "Bearer nope"),
            ),
            ForgeKind::Gitea | ForgeKind::Forgejo => (
                format!("/api/v1/repos/ops/fleet/statuses/{sha}"),
                ("Authorization", format!("token {TOKEN}")),
                ("Authorization", "token nope"),
            ),
            ForgeKind::GitLab => (
                format!("/api/v4/projects/ops%2Ffleet/statuses/{sha}"),
                ("PRIVATE-TOKEN", TOKEN.to_owned()),
                ("PRIVATE-TOKEN", "nope"),
            ),
        };
        let context_key = if kind == ForgeKind::GitLab {
            "name"
        } else {
            "context"
        };
        let status = |state: &str, description: &str| {
            let mut body = serde_json::json!({
                "state": state,
                "description": description,
                "target_url": "http://ci-1/deploys/1",
            });
            body[context_key] = Value::from("deployd/sambirano");
            body
        };
        let pending = if kind == ForgeKind::GitLab {
            "running"
        } else {
            "pending"
        };
        let (code, body) = post_status(
            forge,
            &path,
            (auth.0, &auth.1),
            &status(pending, "building"),
        );
        assert_eq!(code, 201, "{kind}: {body}");
        let (code, _) = post_status(forge, &path, wrong, &status(pending, "building"));
        assert_eq!(code, 401, "{kind}");
        let long = "x".repeat(141);
        let (code, body) = post_status(forge, &path, (auth.0, &auth.1), &status("success", &long));
        let expected = match kind {
            ForgeKind::GitHub => 422,
            _ => 201,
        };
        assert_eq!(code, expected, "{kind}: {body}");
        if kind == ForgeKind::GitLab {
            // "running" again after the status ended: a new status, accepted;
            // then "running" twice for one name and sha: GitLab refuses.
            let running = status("running", "deploying");
            let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &running);
            assert_eq!(code, 201);
            let (code, body) = post_status(forge, &path, (auth.0, &auth.1), &running);
            assert_eq!(code, 400, "{body}");
            assert_eq!(
                body["message"],
                "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"
            );
            let (code, _) = post_status(
                forge,
                &path,
                (auth.0, &auth.1),
                &status("success", &"y".repeat(256)),
            );
            assert_eq!(code, 400, "over 255");
            let numeric = format!("/api/v4/projects/42/statuses/{sha}");
            let (code, _) =
                post_status(forge, &numeric, (auth.0, &auth.1), &status("success", "ok"));
            assert_eq!(code, 201);
        }
        let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &status("bogus", "x"));
        assert!(code == 422 || code == 400, "{kind}: {code}");

        forge.set_api_down(true);
        let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &status("success", "done"));
        assert_eq!(code, 503, "{kind}");
        forge.set_api_down(false);
        let down = forge.statuses_while_down();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].state, "success");
        assert_eq!(down[0].answer, 503);

        let recorded = forge.statuses();
        assert_eq!(recorded[0].sha, sha);
        assert_eq!(recorded[0].context, "deployd/sambirano", "{kind}");
        assert_eq!(recorded[0].state, pending);
        assert_eq!(recorded[0].description.as_deref(), Some("building"));
        assert_eq!(
            recorded[0].target_url.as_deref(),
            Some("http://ci-1/deploys/1")
        );
        assert!(recorded[0].token_valid);
        assert_eq!(recorded[0].answer, 201);
        assert!(!recorded[1].token_valid, "{kind}");
        assert_eq!(recorded[1].answer, 401);
        assert!(recorded.windows(2).all(|pair| pair[0].at <= pair[1].at));
        assert!(recorded.iter().all(|call| call.answer != 503));
    }
}

#[test]
fn github_answers_422_for_an_unknown_commit_and_404_without_a_token() {
    let setup = setup(ForgeKind::GitHub);
    let body = serde_json::json!({"state": "success", "context": "deployd/isalo"});
    let unknown = "/repos/ops/fleet/statuses/1111111111111111111111111111111111111111";
    let bearer = format!("Bearer {TOKEN}");
    let (code, answer) = post_status(&setup.forge, unknown, ("Authorization", &bearer), &body);
    assert_eq!(code, 422);
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("No commit found"));
    let path = format!("/repos/ops/fleet/statuses/{}", setup.second);
    let (code, _) = post_status(&setup.forge, &path, ("X-Other", "1"), &body);
    assert_eq!(code, 404);
    assert!(!setup.forge.statuses()[1].token_valid);
    let (code, _) = post_status(
        &setup.forge,
        "/repos/ops/other/statuses/abc",
        ("Authorization", &bearer),
        &body,
    );
    assert_eq!(code, 404);
}

#[test]
fn git_over_http_clone_push_and_the_hook_it_sends() {
    let setup = setup(ForgeKind::Forgejo);
    let work = tempfile::tempdir().expect("temp dir");
    let clone = work.path().join("clone");
    let url = setup.forge.git_url();
    assert!(url.ends_with("/ops/fleet.git"), "{url}");
    git(
        work.path(),
        &["clone", "-q", &url, clone.to_str().expect("utf-8")],
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), setup.second);

    std::fs::write(clone.join("hosts/isalo.nix"), "{ }\n").expect("write");
    git(&clone, &["add", "."]);
    git(&clone, &["commit", "-q", "-m", "isalo: a host"]);
    let pushed = git(&clone, &["rev-parse", "HEAD"]);
    // A large push, so git sends a chunked (and larger than its post buffer) body.
    std::fs::write(clone.join("bulk"), random_bytes(3 * 1024 * 1024)).expect("write");
    git(&clone, &["add", "."]);
    git(&clone, &["commit", "-q", "-m", "bulk"]);
    let bulk = git(&clone, &["rev-parse", "HEAD"]);
    git(
        &clone,
        &["push", "-q", "origin", &format!("{pushed}:refs/heads/main")],
    );
    git(&clone, &["push", "-q", "origin", "HEAD:refs/heads/bulk"]);

    let received = setup.receiver.wait_for(2);
    assert_eq!(received.len(), 2, "one hook per push");
    let main = received
        .iter()
        .find(|hook| hook.json()["ref"] == "refs/heads/main")
        .expect("the main hook");
    assert_signed(ForgeKind::Forgejo, main);
    assert_eq!(event_of(ForgeKind::Forgejo, main), "push");
    assert_eq!(main.json()["before"], setup.second.as_str());
    assert_eq!(main.json()["after"], pushed.as_str());
    let bulk_hook = received
        .iter()
        .find(|hook| hook.json()["ref"] == "refs/heads/bulk")
        .expect("the bulk hook");
    assert_eq!(bulk_hook.json()["before"], "0".repeat(40));
    assert_eq!(bulk_hook.json()["after"], bulk.as_str());

    // The forge's repository holds the push; a fresh fetch sees it.
    assert_eq!(
        git(&setup.repository, &["rev-parse", "refs/heads/main"]),
        pushed
    );
    let fetched = work.path().join("fetched");
    git(
        work.path(),
        &["init", "-q", fetched.to_str().expect("utf-8")],
    );
    git(&fetched, &["fetch", "-q", &url, "refs/heads/main"]);
    assert_eq!(git(&fetched, &["rev-parse", "FETCH_HEAD"]), pushed);
}

fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0; count];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("random bytes");
    bytes
}
