//! `push --build-host`: the systems are built on the builder through a real
//! SSH server (`ssh-ng://`), the result and a GC root stay there, the
//! closures go from there into the cache, and the hosts pull from it.

mod support;

use support::push::{system_at, text, PushLab};

#[test]
fn builds_on_the_build_host_over_ssh() {
    let mut fleet = PushLab::up(2);
    let ssh = fleet.lab.start_builder_ssh().expect("sshd on the builder");
    // A system no other test builds, so it cannot already be in this
    // machine's store.
    let unique = std::process::id() * 1000 + (support::deployd::now() % 1000) as u32;
    let rev = fleet
        .lab
        .flake_mut()
        .commit("A system only this test builds", |settings| {
            settings.label = unique
        })
        .expect("commit");
    let output = fleet.push_with(
        &["--all", "--build-host", &ssh.destination],
        &[("NIX_SSHOPTS", &ssh.nix_sshopts)],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("building on {}", ssh.destination)),
        "{stderr}"
    );
    let builder = fleet.lab.builder().clone();
    for host in fleet.lab.hosts() {
        let system = system_at(fleet.lab.flake().dir(), &rev, &host.name);
        assert_eq!(host.current_system().as_ref(), Some(&system));
        assert!(
            builder.outside(&system).exists(),
            "not built on the builder"
        );
        assert!(
            !std::path::Path::new(&system).exists(),
            "built on the operator's machine"
        );
        let root = builder.outside(&format!(
            "/var/lib/home/.local/state/deployd/gc-roots/{}",
            host.name
        ));
        assert_eq!(
            std::fs::read_link(&root)
                .expect("GC root on the builder")
                .to_string_lossy(),
            system
        );
        let hash = &system["/nix/store/".len()..][..32];
        assert!(
            fleet
                .lab
                .cache_dir()
                .join(format!("{hash}.narinfo"))
                .exists(),
            "not in the cache"
        );
    }
}
