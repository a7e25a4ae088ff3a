//! push checks, before it sends anything, that every host's system is in a
//! cache the host pulls from, signed by a key the host trusts: otherwise it
//! stops with one line naming the path (exit 2) and no host is touched.

mod support;

use support::deployd::status;
use support::push::{text, PushLab};

/// Rewrites push.toml without the lines starting with `key = `.
fn inventory_without(fleet: &PushLab, keys: &[&str]) {
    let path = fleet.lab.flake().dir().join("push.toml");
    let text = std::fs::read_to_string(&path).expect("inventory");
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            !keys
                .iter()
                .any(|key| line.starts_with(&format!("{key} = ")))
        })
        .collect();
    std::fs::write(&path, kept.join("\n")).expect("inventory");
}

fn assert_no_host_touched(fleet: &PushLab) {
    for host in fleet.lab.hosts() {
        let status = status(&fleet.lab, host);
        assert_eq!(status.last_deploy, None, "{} got a deploy", host.name);
        assert_eq!(status.active_deploy, None, "{} got a deploy", host.name);
        assert!(host.switch_log().expect("switch log").is_empty());
    }
}

#[test]
fn a_system_missing_from_the_cache_is_not_sent() {
    let fleet = PushLab::up(2);
    inventory_without(&fleet, &["copy_to", "sign_key_file"]);
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let last = stderr.lines().last().expect("a line");
    assert!(
        last.starts_with("push: ") && last.contains("/nix/store/"),
        "{last}"
    );
    assert!(
        last.contains("is in none of the caches it pulls from (http://")
            && last.ends_with("no deploy was sent"),
        "{last}"
    );
    assert_no_host_touched(&fleet);
}

#[test]
fn a_system_the_hosts_keys_did_not_sign_is_not_sent() {
    let fleet = PushLab::up(1);
    inventory_without(&fleet, &["sign_key_file"]);
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let last = stderr.lines().last().expect("a line");
    assert!(
        last.contains("is not signed by a key sambirano trusts")
            && last.contains("has it unsigned"),
        "{last}"
    );
    assert_no_host_touched(&fleet);

    // Once the operator signs the cache's copy, the same revision goes out.
    let system = support::push::system_at(
        fleet.lab.flake().dir(),
        &fleet.lab.flake().head().expect("head"),
        "sambirano",
    );
    fleet.lab.sign_in_cache(&[&system]).expect("sign");
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
}
