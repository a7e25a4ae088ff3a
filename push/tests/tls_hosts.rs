//! A host whose push.toml entry says `tls = true`, or whose address is an
//! `https://` URL, is reached over HTTPS and nothing else: `push status`
//! and `push log` work through a CA given as `ca_file` and show the
//! `https://` URL; without that CA the certificate does not verify, which
//! push says in one line naming the host (exit 1, the host is unreachable,
//! not bad input); a host that answers plain HTTP is never asked over it.

mod support;

use std::path::Path;
use std::process::Output;

use support::fake_host::{fixture, FakeHost, HOST, LOG_LINE};

/// A flake directory holding `push.toml` with `inventory` and the test CA
/// as `ca.pem`.
fn flake(inventory: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(fixture("ca.pem"), dir.path().join("ca.pem")).expect("ca");
    std::fs::write(dir.path().join("push.toml"), inventory).expect("inventory");
    dir
}

/// Runs `push ARGS --flake DIR` with no key and none of OpenSSL's
/// variables that would make the system's roots trust the test CA.
fn push(dir: &Path, args: &[&str]) -> Output {
    support::run(
        support::push()
            .args(args)
            .arg("--flake")
            .arg(dir)
            .env_remove("DEPLOYD_KEY_FILE")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR"),
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_tls_host_is_reached_over_https_with_the_ca_file() {
    let host = FakeHost::https();
    let port = host.address.port();
    let dir = flake(&format!(
        "[defaults]\nca_file = \"ca.pem\"\n[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {port}\ntls = true\n"
    ));
    let output = push(dir.path(), &["status", "--json"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json[HOST]["url"], format!("https://127.0.0.1:{port}"));
    assert_eq!(json[HOST]["status"]["hostname"], HOST);

    let output = push(dir.path(), &["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(support::table_cell(&stdout, HOST, "TLS"), "yes", "{stdout}");

    // push log: the deploy's log over the same HTTPS, and where it read it.
    let output = push(dir.path(), &["log", "--host", HOST]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(LOG_LINE), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "push: deploy d-1 on {HOST} (https://127.0.0.1:{port})"
        )),
        "{stderr}"
    );
    let requests = host.requests();
    assert!(
        requests.contains(&"GET /v1/deploys/d-1/events HTTP/1.1".to_owned()),
        "{requests:?}"
    );
}

#[test]
fn an_https_address_is_enough_and_a_host_ca_file_adds_to_the_defaults() {
    let host = FakeHost::https();
    let port = host.address.port();
    let dir = flake(&format!(
        "[hosts.{HOST}]\naddress = \"https://127.0.0.1:{port}\"\nca_file = \"ca.pem\"\n"
    ));
    let output = push(dir.path(), &["status", "--json"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json[HOST]["url"], format!("https://127.0.0.1:{port}"));
    assert_eq!(host.requests(), ["GET /v1/status HTTP/1.1"]);
}

#[test]
fn a_certificate_that_does_not_verify_is_one_line_naming_the_host() {
    let host = FakeHost::https();
    let port = host.address.port();
    // No ca_file: the test CA is in no root store.
    let dir = flake(&format!(
        "[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {port}\ntls = true\n"
    ));
    let expected = format!(
        "https://127.0.0.1:{port}/v1/status: certificate not trusted (UnknownIssuer): \
         is it signed by a CA in the system's roots or ca_file?"
    );

    let output = push(dir.path(), &["status", "--json"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json[HOST]["unreachable"], expected, "{json}");

    let output = push(dir.path(), &["log", "--host", HOST]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "unreachable is 1: {stdout}\n{stderr}"
    );
    assert_eq!(
        stderr.trim_end(),
        format!("push: {HOST} is unreachable: {expected}"),
    );
    assert!(!stderr.contains("error sending request"), "{stderr}");
    assert!(
        host.requests().is_empty(),
        "a request went to a host whose certificate does not verify: {:?}",
        host.requests()
    );
}

#[test]
fn a_tls_host_is_never_asked_over_plain_http() {
    let host = FakeHost::http();
    let port = host.address.port();
    for entry in [
        format!("address = \"127.0.0.1\"\nport = {port}\ntls = true\n"),
        format!("address = \"https://127.0.0.1:{port}\"\n"),
    ] {
        let dir = flake(&format!(
            "[defaults]\nca_file = \"ca.pem\"\n[hosts.{HOST}]\n{entry}"
        ));
        let output = push(dir.path(), &["status", "--json"]);
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
        let why = json[HOST]["unreachable"].as_str().expect("unreachable");
        assert!(
            why.starts_with(&format!(
                "https://127.0.0.1:{port}/v1/status: the TLS handshake failed ("
            )),
            "{why}"
        );
    }
    let requests = host.requests();
    assert!(!requests.is_empty(), "push did not try the host");
    assert!(
        requests.iter().all(|request| request == "TLS ClientHello"),
        "push fell back to plain HTTP: {requests:?}"
    );

    // The same host without tls: plain HTTP, as before.
    let dir = flake(&format!(
        "[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {port}\n"
    ));
    let output = push(dir.path(), &["status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(
        host.requests().last().map(String::as_str),
        Some("GET /v1/status HTTP/1.1")
    );
}

#[test]
fn a_bad_ca_file_is_bad_input() {
    let dir = flake(&format!(
        "[defaults]\nca_file = \"missing.pem\"\n[hosts.{HOST}]\n"
    ));
    let output = push(dir.path(), &["status"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ca_file") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}
