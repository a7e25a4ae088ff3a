//! Exit statuses hold for every subcommand: a host's trouble is 1 (it is
//! unreachable, has no deploy yet, answers under another name), bad usage
//! or input is 2, never the other way round. Hosts are stand-ins for
//! deployd ([`FakeHost`], whose `/v1/status` has deployd's shape) or a
//! closed port.

mod support;

use std::path::Path;
use std::process::Output;

use support::fake_host::{FakeHost, HOST};

/// A flake directory whose push.toml names [`HOST`] at `port` on 127.0.0.1.
fn flake(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("push.toml"),
        format!("[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    )
    .expect("inventory");
    dir
}

fn push(dir: &Path, args: &[&str]) -> Output {
    support::run(
        support::push()
            .args(args)
            .arg("--flake")
            .arg(dir)
            .env_remove("DEPLOYD_KEY_FILE"),
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn push_log_is_1_for_a_host_s_trouble_and_2_for_bad_usage() {
    let port = closed_port();
    let dir = flake(port);
    let output = push(dir.path(), &["log", "--host", HOST]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "push: {HOST} is unreachable: http://127.0.0.1:{port}/v1/status: connection refused"
        )
    );

    let fresh = FakeHost::fresh();
    let dir = flake(fresh.address.port());
    let output = push(dir.path(), &["log", "--host", HOST]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stderr.trim_end(), format!("push: {HOST} has no deploy yet"));

    // A deploy the host does not have: the host says so (its refusal, 1).
    let output = push(dir.path(), &["log", "--host", HOST, "d-404"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("not_found: no such thing"), "{stderr}");

    // Bad usage, before any host is asked.
    let output = push(dir.path(), &["log"]);
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
    let output = push(dir.path(), &["log", "--host", "isalo"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("isalo"), "{stderr}");
    assert_eq!(
        fresh.requests().len(),
        2,
        "bad usage asked the host: {:?}",
        fresh.requests()
    );
}

#[test]
fn push_log_takes_the_host_of_flake_dir_hash_host() {
    let fresh = FakeHost::fresh();
    let dir = flake(fresh.address.port());
    let log = |flake: String, extra: &[&str]| {
        support::run(
            support::push()
                .arg("log")
                .args(extra)
                .arg("--flake")
                .arg(flake)
                .env_remove("DEPLOYD_KEY_FILE"),
        )
    };
    let output = log(format!("{}#{HOST}", dir.path().display()), &[]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stderr.trim_end(), format!("push: {HOST} has no deploy yet"));
    assert_eq!(fresh.requests().len(), 1, "{:?}", fresh.requests());

    // Two hosts named: push log shows one, and asks nobody.
    let output = log(
        format!("{}#{HOST}", dir.path().display()),
        &["--host", "isalo"],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("name two hosts"), "{stderr}");
    assert_eq!(fresh.requests().len(), 1, "{:?}", fresh.requests());
}

#[test]
fn push_status_flags_a_host_that_answers_under_another_name() {
    let other = FakeHost::named("isalo");
    let dir = flake(other.address.port());
    let output = push(dir.path(), &["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        support::table_cell(&stdout, HOST, "STATE"),
        "wrong_host(isalo)",
        "{stdout}"
    );
    let warning = stderr
        .lines()
        .find(|line| line.starts_with("push: warning: "))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains(&format!(
            "{HOST} (http://127.0.0.1:{}) answers as isalo",
            other.address.port()
        )) && warning.contains("wrong_host"),
        "{warning}"
    );

    let output = push(dir.path(), &["status", "--json"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json[HOST]["wrong_host"], "isalo", "{json}");

    // The same stand-in under the inventory's name: all is well.
    let own = FakeHost::http();
    let dir = flake(own.address.port());
    let output = push(dir.path(), &["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("wrong_host") && stderr.is_empty(),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn every_subcommand_s_help_tells_its_exit_statuses() {
    for args in [
        vec!["--help"],
        vec!["status", "--help"],
        vec!["log", "--help"],
        vec!["rollback", "--help"],
        vec!["keygen", "--help"],
        vec!["install", "--help"],
        vec!["serve", "--help"],
        vec!["completions", "--help"],
        vec!["man", "--help"],
    ] {
        let output = support::run(support::push().args(&args));
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains("Exit status: "), "{args:?}: {stdout}");
    }
}
