//! `lab bench-fanout` on a tiny fleet: it prints a line with numbers for
//! every way (the pull way polling every second), CPU time by part, the
//! pull way's time against its interval, the latency figure (deployd
//! against `nix copy` and the floor, on a closure of three levels), and
//! leaves no lab behind (no namespace, no bridge, no registry entry, no
//! directory, no process).

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
        .args(["--latency-figure", "5:3:1", "--latency-hosts", "2"])
        .args(["--latency-rounds", "1"])
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

    check_latency_table(&stdout);

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

/// The latency figure's line: ms, paths, MB, depth, deployd s, (min-max),
/// nix-copy s, (min-max), floor s, x nix-copy, x floor.
fn check_latency_table(stdout: &str) {
    let line = stdout
        .lines()
        .skip_while(|line| !line.starts_with("latency: 2 hosts"))
        .nth(2)
        .unwrap_or_else(|| panic!("no latency table in\n{stdout}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns.len(), 11, "{line}");
    let number = |index: usize| -> f64 {
        columns[index]
            .parse()
            .unwrap_or_else(|_| panic!("column {index} of {line}"))
    };
    assert_eq!(columns[0], "5", "{line}");
    // The toy system's own paths and the three extra ones.
    assert!(number(1) > 3.0, "{line}");
    // Three levels of extra paths under the system: a chain of four at least.
    assert!(number(3) >= 4.0, "{line}");
    let (deployd, copy, floor) = (number(4), number(6), number(8));
    assert!(deployd > 0.0 && copy > 0.0 && floor > 0.0, "{line}");
    // The floor is at least depth x 5 ms, and no way beats it.
    assert!(floor >= number(3) * 0.005, "{line}");
    assert!(floor < copy && floor < deployd, "{line}");
    let ratio = (deployd / copy * 100.0).round() / 100.0;
    assert!((number(9) - ratio).abs() <= 0.011, "{line}");
}
