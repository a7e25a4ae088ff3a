//! `lab bench-fanout` on a tiny fleet: it prints a line with numbers for
//! every way (the pull way polling every second), CPU time by part, the
//! pull way's time against its interval, and leaves no lab behind (no
//! namespace, no bridge, no registry entry, no directory, no process).

mod support;

use std::path::Path;
use std::process::Command;

use deployd_lab::net::{list_links, list_netns};
use deployd_lab::REGISTRY_DIR;
use support::{lab_options, processes_using};

const WAYS: [&str; 5] = ["limit", "deployd", "ssh-parallel", "ssh-sequential", "pull"];

/// The lab's bridge, from the progress line `bench: lab dlN is up in DIR`.
fn bridge(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("bench: lab "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no lab line in {stderr}"))
        .to_owned()
}

#[test]
fn a_tiny_benchmark_measures_every_way_and_leaves_nothing() {
    let options = lab_options(2);
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("lab");
    let output = Command::new(&options.lab_binary)
        .arg("--dir")
        .arg(&dir)
        .args(["bench-fanout", "--hosts", "2", "--paths", "3"])
        .args(["--megabytes", "1", "--rounds", "1"])
        .args(["--ways", &WAYS.join(","), "--pull-interval-s", "1"])
        .output()
        .expect("running lab bench-fanout");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    assert!(stdout.contains("fan-out to 2 hosts"), "{stdout}");
    for way in WAYS {
        // The first table's line: way, wall, (min-max), x limit, CPU, (min-max), x limit.
        let line = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(way))
            .unwrap_or_else(|| panic!("no line for {way} in\n{stdout}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns.len(), 7, "{line}");
        for number in [columns[1], columns[3], columns[4], columns[6]] {
            let value: f64 = number.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(value > 0.0, "{line}");
        }
        if way == "limit" {
            assert_eq!((columns[3], columns[6]), ("1.00", "1.00"), "{line}");
        }
    }
    assert!(stdout.contains("CPU s by part"), "{stdout}");
    // The pull table: wall, (min-max), interval, x interval, publish,
    // limit, wait, x interval; the wall time holds the publish and the limit.
    let pull = stdout
        .lines()
        .skip_while(|line| !line.starts_with("pull: until every host switched"))
        .nth(2)
        .unwrap_or_else(|| panic!("no pull table in\n{stdout}"));
    let columns: Vec<&str> = pull.split_whitespace().collect();
    assert_eq!(columns.len(), 8, "{pull}");
    assert_eq!(columns[2], "1", "{pull}");
    let number = |column: &str| -> f64 { column.parse().unwrap_or_else(|_| panic!("{pull}")) };
    let (wall, publish, limit) = (number(columns[0]), number(columns[4]), number(columns[5]));
    assert!(publish > 0.0 && limit > 0.0 && wall > publish, "{pull}");

    let bridge = bridge(&stderr);
    let prefix = format!("{bridge}-");
    let namespaces: Vec<String> = list_netns()
        .expect("netns list")
        .into_iter()
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert_eq!(namespaces, Vec::<String>::new(), "namespaces left");
    let links: Vec<String> = list_links()
        .expect("link list")
        .into_iter()
        .filter(|name| name == &bridge || name.starts_with(&format!("{bridge}v")))
        .collect();
    assert_eq!(links, Vec::<String>::new(), "interfaces left");
    assert!(!Path::new(REGISTRY_DIR)
        .join(format!("{bridge}.json"))
        .exists());
    assert!(!dir.exists(), "the benchmark left its directory");
    assert_eq!(processes_using(&dir), Vec::<String>::new());
}
