//! A host whose address reaches another machine (its `/v1/status` gives
//! another name than push.toml's) is refused by push itself before
//! anything is built or sent, saying so in one line (exit 1): that host
//! would refuse the deploy as `wrong_host`. The host is a stand-in for
//! deployd ([`FakeHost`], whose `/v1/status` has deployd's shape).

mod support;

use support::fake_host::{FakeHost, HOST};
use support::flake::flake;

#[test]
fn a_host_answering_under_another_name_gets_nothing() {
    let other = FakeHost::named("isalo");
    let dir = flake(other.address.port());
    let output = support::run(
        support::push()
            .args(["--host", HOST, "--flake"])
            .arg(dir.path())
            .env_remove("DEPLOYD_KEY_FILE")
            .env("XDG_STATE_HOME", dir.path().join("state")),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let port = other.address.port();
    assert!(
        stdout.contains(&format!(
            "{HOST}: http://127.0.0.1:{port} answers as isalo: is its address another machine's? (a deploy would be refused: wrong_host)\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(!stderr.contains("build:"), "something was built: {stderr}");
    assert_eq!(other.requests(), ["GET /v1/status HTTP/1.1"]);
}
