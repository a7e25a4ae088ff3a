//! Bad input to `push`: each is one clear line on stderr and exit status 2,
//! before any host is contacted or anything is built.

mod support;

use std::path::Path;

use deployd_protocol::SecretKey;
use support::{push, run};

/// A flake repository with an inventory of one host where nothing
/// listens (port 9, discard) and a valid key.
fn flake() -> tempfile::TempDir {
    support::flake::flake(9)
}

/// Runs push in `dir` and expects exit 2 with one stderr line containing `expected`.
#[track_caller]
fn refused(dir: &Path, args: &[&str], expected: &str) {
    let output = run(push()
        .current_dir(dir)
        .env_remove("DEPLOYD_KEY_FILE")
        .args(args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    // clap adds its standard hint to usage errors; the error itself is one line.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("For more information, try"))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn each_bad_input_is_one_line_and_exit_2() {
    let dir = flake();
    let path = dir.path();
    refused(path, &["--host", "nope"], "unknown host nope");
    refused(path, &["--host", "not a host"], "invalid host name");
    refused(path, &[], "--host NAME, or use --all");
    refused(
        path,
        &["--all", "--key", "/nonexistent/ops.secret"],
        "cannot use the deploy key /nonexistent/ops.secret",
    );
    std::fs::write(path.join("bad.secret"), "ops-1:not-base64!").expect("write");
    refused(path, &["--all", "--key", "bad.secret"], "not valid base64");
    let public = SecretKey::generate("ops-1".parse().expect("name"))
        .expect("random")
        .public_key();
    std::fs::write(path.join("public.secret"), public.to_string()).expect("write");
    refused(
        path,
        &["--all", "--key", "public.secret"],
        "a secret key has 64 bytes",
    );
    refused(
        path,
        &["--all", "no-such-revision"],
        "no revision \"no-such-revision\"",
    );
    refused(path, &["--all", "--action", "reboot"], "invalid action");
    refused(
        path,
        &["--all", "--parallel", "0"],
        "--parallel must be at least 1",
    );
    refused(
        path,
        &["--all", "--build-host=-oProxyCommand=sh"],
        "is not an SSH destination",
    );
    std::fs::write(
        path.join("push.toml"),
        "[hosts.sambirano]\nadress = \"x\"\n",
    )
    .expect("write");
    refused(path, &["--all"], "unknown field `adress`");
    std::fs::write(
        path.join("push.toml"),
        "[defaults]\nkey_file = \"ops.secret\"\nsign_key_file = \"missing.secret\"\n[hosts.sambirano]\n",
    )
    .expect("write");
    refused(path, &["--all"], "cannot read the cache signing key");
    std::fs::write(
        path.join("push.toml"),
        "[defaults]\nkey_file = \"ops.secret\"\ncopy_to = \"https://alice:s3cret@cache.example\"\n[hosts.sambirano]\n",
    )
    .expect("write");
    refused(
        path,
        &["--all"],
        "[defaults] copy_to \"https://alice:***@cache.example\" has a password in it; credentials never go in a URL",
    );
    refused(path, &["status"], "netrc-file");
    std::fs::remove_file(path.join("push.toml")).expect("remove");
    refused(path, &["--all"], "cannot read the inventory");
    refused(path, &["status"], "cannot read the inventory");
}

#[test]
fn a_bad_rollout_in_batches_is_one_line_and_exit_2() {
    let dir = flake();
    let path = dir.path();
    std::fs::write(
        path.join("push.toml"),
        "[defaults]\nkey_file = \"ops.secret\"\nport = 9\n\
         [hosts.isalo]\naddress = \"127.0.0.1\"\n[hosts.sambirano]\naddress = \"127.0.0.1\"\n",
    )
    .expect("inventory");
    refused(path, &["--all", "--canary", "0"], "at least 1 host");
    refused(path, &["--all", "--canary", "2"], "leaves no host after it");
    refused(
        path,
        &["--all", "--canary", "isalo,sambirano"],
        "names every selected host",
    );
    refused(
        path,
        &["--host", "isalo", "--canary", "sambirano"],
        "the canary sambirano is not one of the selected hosts",
    );
    refused(path, &["--all", "--batch", "0"], "at least 1 host");
    refused(path, &["--all", "--batch", "101%"], "more than 100%");
    refused(path, &["--all", "--batch", "half"], "not a batch size");
    refused(
        path,
        &["--all", "--max-failures", "1"],
        "needs a canary or a batch size",
    );
    refused(
        path,
        &["--all", "--batch", "1", "--no-wait"],
        "cannot go with --no-wait",
    );
    std::fs::write(
        path.join("push.toml"),
        "[defaults]\nkey_file = \"ops.secret\"\nmessage_lifetime_s = 901\n[hosts.sambirano]\n",
    )
    .expect("inventory");
    refused(
        path,
        &["--all"],
        "[defaults] message_lifetime_s = 901: it must be 1 to 900 seconds",
    );
}
