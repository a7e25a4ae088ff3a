//! `push plan` against a lab of real deployd hosts on an older revision: it
//! names the package that changes with both versions, the paths each host
//! lacks and their size (checked against the cache's narinfos), a reboot
//! when the kernel changes and "switch refused" when a switch inhibitor
//! changes, a row for a host that cannot be reached, and changes nothing on
//! any host: the same valid store paths, profile and deploy records.

mod support;

use std::collections::BTreeMap;

use deployd_lab::Node;
use support::push::{system_at, text, PushLab};

/// Everything a plan must leave as it was on `host`.
#[derive(Debug, PartialEq, Eq)]
struct Untouched {
    valid_paths: String,
    store_entries: String,
    profile: Option<String>,
    current: Option<String>,
    records: String,
}

fn untouched(host: &Node) -> Untouched {
    let run = |script: &str| {
        let output = host.sh(script).expect("a command on the host");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    Untouched {
        valid_paths: run("nix-store --dump-db"),
        store_entries: run("ls -a /nix/store"),
        profile: host.profile_generation(),
        current: host.current_system(),
        records: format!("{:?}", host.deploy_records().expect("records")),
    }
}

/// A narinfo's `FileSize` and `NarSize`, from the lab's cache.
fn narinfo_sizes(cache: &std::path::Path, path: &str) -> (u64, u64) {
    let base = path.trim_start_matches("/nix/store/");
    let text = std::fs::read_to_string(cache.join(format!("{}.narinfo", &base[..32])))
        .unwrap_or_else(|error| panic!("the cache's narinfo of {path}: {error}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in the narinfo of {path}"))
    };
    (field("FileSize"), field("NarSize"))
}

#[test]
fn plan_shows_each_host_what_would_change_and_changes_nothing() {
    let mut fleet = PushLab::up(3);
    let old = fleet.lab.flake().head().expect("head");
    let output = fleet.push(&["--all", &old]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let hosts = fleet.lab.hosts().to_vec();
    for host in &hosts {
        // As NixOS's stage 2 links it at boot: the hosts booted the old
        // system.
        let running = host.current_system().expect("a running system");
        std::os::unix::fs::symlink(running, host.outside("/run/booted-system"))
            .expect("booted-system");
    }
    let (inhibited, down) = (&hosts[1], &hosts[2]);
    let flake = fleet.lab.flake_mut();
    flake.commit_new_kernel("6.7.2").expect("commit");
    let rev = flake
        .commit_changed_inhibitors(&inhibited.name)
        .expect("commit");
    fleet.lab.stop_deployd(down).expect("stop deployd");
    let before: Vec<Untouched> = hosts.iter().map(untouched).collect();

    let output = fleet.push(&["plan", "--all", "--json", &rev]);
    let (stdout, stderr) = text(&output);
    // A host that cannot be reached: exit 1, as push's.
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let plans: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let by_host: BTreeMap<String, serde_json::Value> = plans["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|plan| {
            (
                plan["host"].as_str().expect("host").to_owned(),
                plan.clone(),
            )
        })
        .collect();
    assert_eq!(by_host.len(), 3, "{stdout}");
    assert_eq!(by_host[&down.name]["result"], "unreachable", "{stdout}");
    let cache = fleet.lab.cache_dir();
    for host in &hosts[..2] {
        let plan = &by_host[&host.name];
        assert_eq!(plan["result"], "planned", "{plan}");
        assert_eq!(
            plan["system"],
            system_at(fleet.lab.flake().dir(), &rev, &host.name)
        );
        assert_eq!(
            plan["running"],
            system_at(fleet.lab.flake().dir(), &old, &host.name)
        );
        // The kernel package changes, both versions named.
        let linux = plan["changed"]
            .as_array()
            .expect("changed")
            .iter()
            .find(|changed| changed["name"] == "linux")
            .unwrap_or_else(|| panic!("linux changes: {plan}"));
        assert!(linux["old"].to_string().contains("\"6.6.1\""), "{linux}");
        assert!(linux["new"].to_string().contains("\"6.7.2\""), "{linux}");
        assert!(plan["reboot_for"].to_string().contains("kernel"), "{plan}");
        // What it lacks, as the cache's narinfos weigh it (Nix prints MiB
        // to two decimals).
        let missing: Vec<&str> = plan["fetch"]["paths"]
            .as_array()
            .expect("paths")
            .iter()
            .map(|path| path.as_str().expect("path"))
            .collect();
        assert!(
            missing.iter().any(|path| path.contains("-linux-6.7.2")),
            "{plan}"
        );
        let (mut download, mut unpacked) = (0, 0);
        for path in &missing {
            let (file, nar) = narinfo_sizes(&cache, path);
            download += file;
            unpacked += nar;
            let valid = host.run(&["nix-store", "--check-validity", path]);
            assert!(
                valid.is_err(),
                "{path} is said missing but is valid on {}",
                host.name
            );
        }
        let rounding = 0.005 * 1024.0 * 1024.0;
        for (said, summed) in [
            (&plan["fetch"]["download_bytes"], download),
            (&plan["fetch"]["unpacked_bytes"], unpacked),
        ] {
            let said = said.as_u64().expect("bytes") as f64;
            assert!(
                (said - summed as f64).abs() <= rounding,
                "{said} vs {summed}: {plan}"
            );
        }
        let refused = !plan["inhibitors_changed"]
            .as_array()
            .expect("inhibitors")
            .is_empty();
        assert_eq!(refused, host.name == inhibited.name, "{plan}");
    }

    // The table says it too.
    let output = fleet.push(&["plan", "--all", &rev]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("a row for {name}: {stdout}"))
            .to_owned()
    };
    assert!(row(&hosts[0].name).contains("reboot"), "{stdout}");
    assert!(!row(&hosts[0].name).contains("switch refused"), "{stdout}");
    assert!(row(&inhibited.name).contains("switch refused"), "{stdout}");
    assert!(row(&down.name).contains("unreachable"), "{stdout}");
    assert!(
        stdout.contains("[C] linux: 6.6.1, 6.6.1-modules -> 6.7.2, 6.7.2-modules"),
        "{stdout}"
    );

    let after: Vec<Untouched> = hosts.iter().map(untouched).collect();
    for ((host, before), after) in hosts.iter().zip(&before).zip(&after) {
        assert_eq!(before, after, "{} changed", host.name);
    }
}
