//! `push` selects hosts as colmena and nixos-rebuild users name them, on
//! real deployd hosts: a host named by `--host`, `--on` (its name and a
//! tag) and `--flake .#HOST` at once is deployed once (a second request
//! would be refused as `busy` and counted a failure), a host not selected
//! is left alone, and the uncommitted push.toml is named in a warning.

mod support;

use support::push::{system_at, text, PushLab};

#[test]
fn a_host_named_every_way_is_switched_once() {
    let fleet = PushLab::up(2);
    let lab = &fleet.lab;
    let (chosen, other) = (lab.hosts()[0].clone(), lab.hosts()[1].clone());
    let inventory = lab.flake().dir().join("push.toml");
    let written = std::fs::read_to_string(&inventory).expect("push.toml");
    let tagged = written.replace(
        &format!("[hosts.{}]\n", chosen.name),
        &format!("[hosts.{}]\ntags = [\"canary\"]\n", chosen.name),
    );
    assert_ne!(tagged, written, "the host's entry was found");
    std::fs::write(&inventory, tagged).expect("push.toml");

    let on = format!("{},@canary", chosen.name);
    let flake = format!(".#{}", chosen.name);
    let output = fleet.push(&["--host", &chosen.name, "--on", &on, "--flake", &flake]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let rows = stdout
        .lines()
        .filter(|line| line.starts_with(&chosen.name))
        .count();
    assert_eq!(rows, 1, "{stdout}");
    assert_eq!(chosen.switch_log().expect("switch log").len(), 1);
    let rev = lab.flake().head().expect("head");
    assert_eq!(
        chosen.current_system(),
        Some(system_at(lab.flake().dir(), &rev, &chosen.name))
    );
    assert_eq!(
        other.current_system(),
        None,
        "{} was not selected",
        other.name
    );
    assert!(
        stderr.contains(&format!(
            "push: warning: the work tree has uncommitted changes (1 file, e.g. push.toml); deploying the committed revision {} only",
            &rev[..12]
        )),
        "{stderr}"
    );
}
