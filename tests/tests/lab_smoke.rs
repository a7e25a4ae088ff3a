//! The lab is real, without deployd: hosts fetch a built system from the
//! builder's signed cache over HTTP into their own stores, set their system
//! profile and switch; a cache signed with an untrusted key is refused by
//! Nix on a host; supervised programs are restarted when they exit.

mod support;

use std::ffi::OsString;
use std::time::Duration;

use deployd_lab::{Lab, SwitchRecord, SYSTEM_PROFILE};
use support::{lab_options, wait_until};

#[test]
fn two_hosts_fetch_set_their_profile_and_switch() {
    let lab = Lab::up(&lab_options(2)).expect("lab up");
    let rev = lab.flake().head().expect("head");
    let systems = lab.build_and_publish(&rev).expect("build and publish");
    for host in lab.hosts() {
        let system = &systems[&host.name];
        assert!(system.contains(&format!("nixos-system-{}-", host.name)));
        assert!(
            !host.outside(system).exists(),
            "{system} is already in {}'s store",
            host.name
        );
        let hash = &system["/nix/store/".len()..][..32];
        assert!(lab.cache_dir().join(format!("{hash}.narinfo")).exists());

        host.run(&["nix-store", "--realise", system])
            .expect("fetch from the cache");
        assert!(host.outside(system).join("nixos-version").exists());
        host.run(&["nix-env", "-p", SYSTEM_PROFILE, "--set", system])
            .expect("set profile");
        let switch = format!("{SYSTEM_PROFILE}/bin/switch-to-configuration");
        host.run(&[&switch, "switch"]).expect("switch");

        assert_eq!(host.profile_generation().as_deref(), Some("system-1-link"));
        assert_eq!(host.profile_system().as_ref(), Some(system));
        assert_eq!(host.current_system().as_ref(), Some(system));
        assert_eq!(
            host.switch_log().expect("switch log"),
            vec![SwitchRecord {
                action: "switch".into(),
                system: system.clone(),
            }]
        );
    }
    // Each host has its own store: the other host's system is not in it.
    let [first, second] = lab.hosts() else {
        panic!("two hosts")
    };
    assert!(!first.outside(&systems[&second.name]).exists());
}

#[test]
fn a_host_refuses_a_cache_signed_by_an_untrusted_key() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let host = lab.hosts()[0].clone();
    let builder = lab.builder().clone();
    let rev = lab.flake().head().expect("head");
    let installable = lab.flake().installable(&rev, &host.name);
    let built = builder
        .run(&["nix", "build", "--no-link", "--json", &installable])
        .expect("build");
    let built: serde_json::Value = serde_json::from_slice(&built.stdout).expect("json");
    let system = built[0]["outputs"]["out"]
        .as_str()
        .expect("out path")
        .to_owned();

    // A second cache on the builder, signed with a key no host trusts.
    let rogue_dir = lab.dir().join("rogue-cache");
    let rogue_key = lab.dir().join("keys/rogue.secret");
    let rogue_public = lab.dir().join("keys/rogue.public");
    builder
        .run(&[
            "nix-store",
            "--generate-binary-cache-key",
            "rogue-1",
            rogue_key.to_str().expect("utf-8"),
            rogue_public.to_str().expect("utf-8"),
        ])
        .expect("rogue key");
    let target = format!("file://{}", rogue_dir.display());
    builder
        .run(&[
            "nix",
            "store",
            "sign",
            "-r",
            "-k",
            rogue_key.to_str().expect("utf-8"),
            &system,
        ])
        .expect("sign with the rogue key");
    builder
        .run(&["nix", "copy", "--to", &target, &system])
        .expect("copy");
    let rogue_address = format!("{}:5001", builder.address);
    let serve: Vec<OsString> = vec![
        env!("CARGO_BIN_EXE_lab").into(),
        "serve-cache".into(),
        "--root".into(),
        rogue_dir.into_os_string(),
        "--listen".into(),
        rogue_address.clone().into(),
    ];
    lab.supervise(&builder, "rogue-cache", serve)
        .expect("serve the rogue cache");
    deployd_lab::wait_for_port(
        rogue_address.parse().expect("address"),
        Duration::from_secs(10),
    )
    .expect("rogue cache up");

    let rogue_url = format!("http://{rogue_address}");
    let refused = host.run(&[
        "nix-store",
        "--realise",
        &system,
        "--option",
        "substituters",
        &rogue_url,
    ]);
    let message = format!(
        "{:#}",
        refused.expect_err("an untrusted signature must be refused")
    );
    assert!(
        message.contains("not signed by any of the keys"),
        "{message}"
    );
    assert!(
        !host.outside(&system).exists(),
        "the path got into the host's store"
    );

    // The same path from the trusted cache is accepted: the refusal was the key's.
    lab.publish(&[&system])
        .expect("publish to the trusted cache");
    host.run(&["nix-store", "--realise", &system])
        .expect("trusted cache");
    assert!(host.outside(&system).exists());
}

#[test]
fn a_supervised_program_is_restarted_when_it_exits_or_is_killed() {
    let mut lab = Lab::up(&lab_options(1)).expect("lab up");
    let host = lab.hosts()[0].clone();
    // It prints the node's address, proving it runs inside the node.
    let argv = host.mounted_argv(
        "/bin/sh",
        [
            "-c",
            "echo started on $(ip -4 -o addr show eth0); exec sleep 600",
        ],
    );
    lab.supervise(&host, "sleeper", argv).expect("supervise");
    assert!(wait_until(Duration::from_secs(10), || lab
        .supervised_pid(&host, "sleeper")
        .is_some()));
    let first = lab.supervised_pid(&host, "sleeper").expect("pid");
    let log = host.root.join("sleeper.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&host.address.to_string()))
    }));

    // Killed, as a crash would: it comes back with a new pid.
    std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("kill");
    assert!(wait_until(Duration::from_secs(10), || {
        lab.supervised_pid(&host, "sleeper")
            .is_some_and(|pid| pid != first)
    }));
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.matches("started on").count() == 2)
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("ended with signal: 9 (SIGKILL); restarting"),
        "{text}"
    );
}
