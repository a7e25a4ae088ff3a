//! A cache's password never reaches anyone who reads a host or push's
//! output. deployd refuses a config with one (its start here, under
//! systemd), so what a real host can still hold is what an earlier deployd
//! wrote while its config had one: the record and log of a fetch that
//! failed from `http://alice:s3cret@CACHE`, made here by deployd's own
//! failed fetch with the lab's cache URL written as that config gave it.
//! And a password still comes with other programs: a health check that
//! asks a URL with one, and the operator's own Nix config, which push's
//! build runs with. None of the answers shows it: the deploys, their event
//! streams, the history, `/v1/status`, `/metrics`, `push log`, `push
//! status`, push's own output, and deployd's journal.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deployd_lab::http::Pace;
use deployd_lab::{Node, TrustedDeployKey, DEPLOYD_CONFIG, DEPLOYD_STATE_DIR};
use deployd_protocol::api::DeployState;
use deployd_protocol::{Action, SecretKey};
use support::deployd::{deploy, deploy_message, http, wait_for_end};
use support::push::{text, PushLab};

const PASSWORD: &str = "s3cret";

/// A health check that asks a URL with a password (and fails: nothing
/// listens on port 1, or curl is not there).
const HEALTH: &str = "\n[health]\ndeadline_s = 3\ninterval_s = 1\n\n[[health.commands]]\ncommand = [\"curl\", \"--fail\", \"--silent\", \"--show-error\", \"http://monitor:s3cret@127.0.0.1:1/health\"]\ntimeout_s = 5\n";

/// A path no cache has.
const MISSING: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-gone";

/// The body of a GET, as text.
fn get_text(url: &str) -> String {
    let response = http().get(url).send().expect("GET");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.text().expect("body")
}

/// Runs `argv` on `host`; its stdout and stderr.
fn run_on(host: &Node, program: &str, args: &[&str]) -> (bool, String) {
    let output = host.command(program, args).output().expect(program);
    let (stdout, stderr) = text(&output);
    (output.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn a_cache_password_is_in_no_answer_log_or_output() {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].clone();
    let ops = SecretKey::load(&fleet.key_file).expect("deploy key");
    let trusted = [TrustedDeployKey {
        public_key: fleet.public_key.clone(),
        may: None,
    }];
    let cache = fleet.lab.cache_url();
    let with_password = cache.replacen("http://", &format!("http://alice:{PASSWORD}@"), 1);

    // A fetch that fails, Nix naming the cache: it is down.
    fleet.lab.stop_cache().expect("cache down");
    let earlier = deploy(
        &fleet.lab,
        &host,
        &deploy_message(&host, "earlier", MISSING, Action::Switch),
        &ops,
    );
    let record = wait_for_end(&fleet.lab, &host, &earlier, Duration::from_secs(90));
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    fleet.lab.stop_deployd(&host).expect("stop deployd");
    // Its record and log as an earlier deployd, whose config gave the cache
    // with its password, wrote them.
    for file in ["record.json", "log"] {
        let path = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{earlier}/{file}"));
        let written = std::fs::read_to_string(&path).expect("state file");
        assert!(written.contains(&cache), "{file} names no cache: {written}");
        std::fs::write(&path, written.replace(&cache, &with_password)).expect("rewrite");
    }

    // This deployd refuses that config, naming where the password goes.
    let config = host.outside(DEPLOYD_CONFIG);
    fleet
        .lab
        .write_deployd_config(&host, &trusted, "")
        .expect("config");
    let text_config = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text_config.replace(&cache, &with_password)).expect("config");
    let mut wrong = Vec::new();
    let (started, said) = run_on(&host, "systemctl", &["restart", "deployd.service"]);
    if started {
        wrong.push(format!("deployd started with a cache password ({said})"));
    }
    let (_, journal) = run_on(
        &host,
        "journalctl",
        &["-u", "deployd", "--no-pager", "-o", "cat"],
    );
    if !(journal.contains("has a password in it") && journal.contains("nix.settings.netrc-file")) {
        wrong.push("deployd's refusal does not name netrc-file".to_owned());
    }
    run_on(&host, "systemctl", &["stop", "deployd.service"]);
    run_on(&host, "systemctl", &["reset-failed", "deployd.service"]);

    // The host as it is once its operator moved the password to netrc-file,
    // with a health check that asks a URL with one.
    fleet
        .lab
        .write_deployd_config(&host, &trusted, HEALTH)
        .expect("config");
    fleet.lab.start_deployd(&host).expect("deployd up");
    fleet.lab.start_cache(Pace::default()).expect("cache up");
    let base = fleet.lab.deployd_url(&host);
    let status_before = get_text(&format!("{base}/v1/status"));
    let history_before = get_text(&format!("{base}/v1/deploys"));

    // push, its operator's Nix config naming a cache with a password that
    // cannot be reached, builds a revision that nothing built before.
    let label = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let rev = fleet
        .lab
        .flake_mut()
        .commit("A system never built", |settings| settings.label = label)
        .expect("commit");
    let pushed = fleet.push_with(
        &["--host", &host.name, &rev],
        &[(
            "NIX_CONFIG",
            "substituters = http://alice:s3cret@127.0.0.1:1\nconnect-timeout = 1",
        )],
    );
    let (stdout, stderr) = text(&pushed);
    let push_output = format!("{stdout}{stderr}");
    assert_eq!(pushed.status.code(), Some(1), "{push_output}");
    let (_, history) = support::deployd::get(&format!("{base}/v1/deploys?limit=1"));
    let live = history[0]["deploy_id"]
        .as_str()
        .expect("the push's deploy")
        .to_owned();
    assert_ne!(live, earlier);

    let events = |id: &str| -> String {
        support::deployd::events(&fleet.lab, &host, id)
            .into_iter()
            .map(|(name, data)| format!("{name}: {data}\n"))
            .collect()
    };
    let push_log = text(&fleet.push(&["log", "--host", &host.name, &earlier]));
    let push_status = text(&fleet.push(&["status"]));
    let push_status_json = text(&fleet.push(&["status", "--json"]));
    // Every field of every entry, byte for byte.
    let (_, journal) = run_on(
        &host,
        "journalctl",
        &["-u", "deployd", "--no-pager", "-o", "export"],
    );
    let answers = [
        (
            "/v1/deploys/earlier",
            get_text(&format!("{base}/v1/deploys/{earlier}")),
        ),
        ("/v1/deploys/earlier/events", events(&earlier)),
        ("/v1/deploys", history_before),
        ("/v1/status", status_before),
        ("/v1/deploys after", get_text(&format!("{base}/v1/deploys"))),
        (
            "/v1/deploys/LIVE",
            get_text(&format!("{base}/v1/deploys/{live}")),
        ),
        ("/v1/deploys/LIVE/events", events(&live)),
        ("/v1/status after", get_text(&format!("{base}/v1/status"))),
        ("/metrics", get_text(&format!("{base}/metrics"))),
        ("push log", format!("{}{}", push_log.0, push_log.1)),
        ("push status", format!("{}{}", push_status.0, push_status.1)),
        (
            "push status --json",
            format!("{}{}", push_status_json.0, push_status_json.1),
        ),
        ("push's own output", push_output.clone()),
        ("deployd's journal", journal.clone()),
    ];
    let leaks: Vec<&str> = answers
        .iter()
        .filter(|(_, said)| said.contains(PASSWORD))
        .map(|(what, _)| *what)
        .collect();
    if !leaks.is_empty() {
        wrong.push(format!("the password shows in: {leaks:?}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Each showed the URLs, masked: the test saw what it meant to.
    let shows = |what: &str, needle: &str| {
        let (_, said) = answers
            .iter()
            .find(|(name, _)| *name == what)
            .expect("an answer");
        assert!(said.contains(needle), "{what} lacks {needle}: {said}");
    };
    let masked_cache = cache.replacen("http://", "http://alice:***@", 1);
    for what in [
        "/v1/deploys/earlier",
        "/v1/deploys/earlier/events",
        "/v1/deploys",
        "push log",
    ] {
        shows(what, &masked_cache);
    }
    shows("/v1/status", "alice:***@");
    for what in [
        "/v1/deploys/LIVE",
        "/v1/deploys/LIVE/events",
        "push's own output",
        "deployd's journal",
    ] {
        shows(what, "http://monitor:***@127.0.0.1:1/health");
    }
    // Nix's own warning about the operator's cache, in push's build output.
    shows("push's own output", "http://alice:***@127.0.0.1:1");
}
