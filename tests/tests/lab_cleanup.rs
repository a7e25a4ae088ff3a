//! `lab down`, drop and a failed test all leave nothing behind: no
//! namespace, no interface, no process, no directory, no registry entry.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use deployd_lab::net::{list_links, list_netns};
use deployd_lab::{Lab, REGISTRY_DIR};
use support::{lab_options, wait_until};

/// The tests compare machine-wide lists, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn snapshot() -> (Vec<String>, Vec<String>) {
    let mut netns = list_netns().expect("netns list");
    let mut links = list_links().expect("link list");
    netns.sort();
    links.sort();
    (netns, links)
}

/// Whether `pid` is a running process (a zombie waiting to be reaped is not).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        state != Some('Z')
    })
}

#[test]
fn down_removes_everything_the_lab_made() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = snapshot();
    let mut lab = Lab::up(&lab_options(2)).expect("lab up");
    let during = snapshot();
    assert_eq!(
        during.0.len(),
        before.0.len() + 3,
        "builder and two hosts: {during:?}"
    );
    assert!(during.1.len() > before.1.len());

    let host = lab.hosts()[0].clone();
    lab.supervise(&host, "sleeper", host.mounted_argv("/bin/sleep", ["600"]))
        .expect("supervise");
    assert!(wait_until(Duration::from_secs(10), || lab
        .supervised_pid(&host, "sleeper")
        .is_some()));
    let sleeper = lab.supervised_pid(&host, "sleeper").expect("pid");
    let cache_server = lab
        .supervised_pid(lab.builder(), "cache-server")
        .expect("cache server pid");
    assert!(process_runs(sleeper) && process_runs(cache_server));
    let dir = lab.dir().to_owned();
    let registry = lab.state().registry_file();
    assert!(registry.starts_with(REGISTRY_DIR) && registry.exists());

    lab.down().expect("lab down");
    assert_eq!(snapshot(), before);
    assert!(!process_runs(sleeper), "the supervised program survived");
    assert!(!process_runs(cache_server), "the cache server survived");
    assert!(!dir.exists());
    assert!(!registry.exists());
}

#[test]
fn a_failed_test_still_cleans_up() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = snapshot();
    let made = std::thread::spawn(|| {
        let lab = Lab::up(&lab_options(1)).expect("lab up");
        let dir = lab.dir().to_owned();
        // Pass the directory out through the panic, then fail like a test does.
        std::panic::panic_any(dir);
    })
    .join()
    .expect_err("the thread panics");
    let dir = made
        .downcast::<std::path::PathBuf>()
        .expect("the lab's directory");
    assert_eq!(snapshot(), before);
    assert!(!dir.exists());
}
