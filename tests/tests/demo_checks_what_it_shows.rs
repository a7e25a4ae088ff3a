//! `lab demo` fails, with a one-line reason, when things do not go as
//! planned, and leaves nothing behind either way: no namespace, no
//! interface, no process, no directory.

mod support;

use std::process::{Command, Output};
use std::sync::Mutex;

use deployd_lab::net::{list_links, list_netns};
use support::{lab_options, processes_using};

/// The tests compare machine-wide lists, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn snapshot() -> (Vec<String>, Vec<String>) {
    let mut netns = list_netns().expect("netns list");
    let mut links = list_links().expect("link list");
    netns.sort();
    links.sort();
    (netns, links)
}

/// Runs `lab demo` in a fresh directory; returns its output and checks that
/// it left nothing behind.
fn demo(args: &[&str]) -> Output {
    let options = lab_options(3);
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("lab");
    let before = snapshot();
    let output = Command::new(&options.lab_binary)
        .arg("--dir")
        .arg(&dir)
        .arg("demo")
        .args(args)
        .output()
        .expect("running lab demo");
    assert_eq!(snapshot(), before, "the demo left namespaces or links");
    assert!(!dir.exists(), "the demo left its directory");
    assert_eq!(processes_using(&dir), Vec::<String>::new());
    output
}

#[test]
fn the_demo_goes_as_planned() {
    let output = demo(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("== as planned: push exited 0, every host runs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("== as planned: push exited 1, ankarana rolled back to"),
        "{stdout}"
    );
    // The forge's "Details" link opens push serve's page of the rollout,
    // which a headless Chromium reads back.
    assert!(
        stdout.contains("== the commit's \"Details\" link, in a headless Chromium: http://"),
        "{stdout}"
    );
    assert!(stdout.contains("  Rollout 1 succeeded"), "{stdout}");
    assert!(stdout.contains("== lab removed"), "{stdout}");
}

#[test]
fn a_demo_whose_build_fails_says_so_and_fails() {
    let output = demo(&["--fail-first-build"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("toy build of nixos-system-sambirano fails on purpose"),
        "{stderr}"
    );
    let reason = stderr.lines().last().expect("a last line");
    assert_eq!(
        reason,
        "lab: the demo failed: the first push did not deploy every host: \
         push exited 1: ankarana succeeded, isalo succeeded, sambirano build_failed"
    );
    assert!(!stdout.contains("as planned"), "{stdout}");
    assert!(!stdout.contains("rolled back"), "{stdout}");
}
