//! Git over HTTP with the real `git`: clone, a push (one chunked), the hooks
//! the push sends, a fetch of the pushed tip.

use std::io::Read;

use super::{assert_signed, event_of, git, setup};
use crate::forge::ForgeKind;

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
