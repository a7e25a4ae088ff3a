//! A host of push.toml that the flake has no `nixosConfigurations` entry
//! for is named as such, with the names the flake has, in one line per
//! place (never push's own `nix eval --apply` expression), and it is that
//! host's failure (exit 1); with `--json` the same summary is JSON on
//! stdout. Real Nix evaluates a tiny flake without inputs; the host is a
//! stand-in for deployd ([`FakeHost`]), since push asks every host what it
//! runs before building.

mod support;

use std::path::Path;

use support::fake_host::{FakeHost, HOST};
use support::flake::flake;

fn push(dir: &Path, args: &[&str]) -> std::process::Output {
    support::run(
        support::push()
            .args(args)
            .arg("--flake")
            .arg(dir)
            .env_remove("DEPLOYD_KEY_FILE")
            .env("XDG_STATE_HOME", dir.join("state")),
    )
}

#[test]
fn a_host_the_flake_lacks_is_named_with_the_names_it_has() {
    let host = FakeHost::http();
    let dir = flake(host.address.port());
    let expected = format!("the flake has no nixosConfigurations.{HOST} (it has: isalo, toliara)");

    let output = push(dir.path(), &["--host", HOST]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{HOST}: {expected}\n")),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("build_failed"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("--apply") && !text.contains("listToAttrs"),
            "push's own expression is shown: {text}"
        );
    }
    assert_eq!(
        host.requests(),
        ["GET /v1/status HTTP/1.1"],
        "only asked what it runs"
    );

    // The same, as JSON on stdout; progress stays on stderr.
    let output = push(dir.path(), &["--json", "--host", HOST]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let rev = json[0]["revision"]
        .as_str()
        .expect("the revision")
        .to_owned();
    assert_eq!(rev.len(), 40, "{json}");
    assert_eq!(
        json,
        serde_json::json!([{
            "host": HOST,
            "result": "build_failed",
            "reason": expected,
            "deploy_id": null,
            "revision": rev,
            "store_path": null,
            "started_at_ms": null,
            "ended_at_ms": null,
            "duration_s": 0.0,
            "reboot_required": null,
        }])
    );
    assert!(stderr.contains("push: revision"), "{stderr}");
}
