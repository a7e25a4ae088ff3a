//! `lab down`, drop and a failed test all leave nothing behind: no
//! namespace, no interface, no process, no directory, no registry entry.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use deployd_lab::cgroups::host_cgroups;
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
    let pid1s: Vec<u32> = lab.hosts().iter().filter_map(|host| host.pid1).collect();
    assert_eq!(pid1s.len(), 2, "each host boots systemd");
    assert!(pid1s.iter().all(|pid| process_runs(*pid)));
    // Each host's systemd has cgroups of its own.
    let cgroups: Vec<_> = lab
        .hosts()
        .iter()
        .flat_map(|host| host_cgroups(&host.netns).expect("cgroups"))
        .collect();
    assert!(!cgroups.is_empty());
    assert!(cgroups.iter().all(|dir| dir.join("init.scope").is_dir()));
    let dir = lab.dir().to_owned();
    let registry = lab.state().registry_file();
    assert!(registry.starts_with(REGISTRY_DIR) && registry.exists());

    lab.down().expect("lab down");
    assert_eq!(snapshot(), before);
    assert!(!process_runs(sleeper), "the supervised program survived");
    assert!(!process_runs(cache_server), "the cache server survived");
    for pid in pid1s {
        assert!(!process_runs(pid), "a host's systemd survived");
    }
    for dir in cgroups {
        assert!(!dir.exists(), "{} was left", dir.display());
    }
    assert!(!dir.exists());
    assert!(!registry.exists());
}

/// Runs `lab --dir DIR ARGS...`; returns its exit code and stdout.
fn lab_command(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("lab runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some(), "{stderr}");
    (output.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn a_person_can_use_systemctl_and_journalctl_on_a_host_of_lab_up() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = snapshot();
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("lab");
    let (code, said) = lab_command(&dir, &["up", "--hosts", "1"]);
    assert_eq!(code, Some(0), "{said}");
    let exec = |command: &[&str]| {
        let mut args = vec!["exec", "sambirano", "--"];
        args.extend_from_slice(command);
        lab_command(&dir, &args)
    };
    let (code, said) = exec(&["systemctl", "is-system-running"]);
    assert_eq!((code, said.trim()), (Some(0), "running"));
    let (code, said) = exec(&["systemctl", "show", "-p", "Type", "--value", "deployd"]);
    assert_eq!((code, said.trim()), (Some(0), "notify"));
    let (code, said) = exec(&["journalctl", "--no-pager", "-b", "-o", "cat"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Reached target"), "{said}");
    // The host's hostname is its own.
    let (_, said) = exec(&["hostname"]);
    assert_eq!(said.trim(), "sambirano");
    let (code, said) = lab_command(&dir, &["down"]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(snapshot(), before);
    assert!(!dir.exists());
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
