//! `lab demo`: a builder and three hosts running deployd; `push` deploys a
//! revision of the toy flake to all three with live progress, then a
//! revision whose switch fails on one host, which rolls itself back; then
//! one signed once through `ssh-agent` with an SSH certificate from a CA
//! every host trusts; then `push status`; then a `git push` to the lab's
//! forge stand-in, which the
//! forge turns into a webhook: `push serve` deploys it to the fleet, and the
//! statuses the forge received are shown.
//!
//! The demo checks what it shows (see [`expect`]): any outcome but the
//! planned one ends it with an error naming what happened instead. Whatever
//! happens, the lab is taken down afterwards unless `--keep` asks otherwise.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deployd_lab::{nix_version, Lab, LabOptions, TrustedDeployKey};
use deployd_protocol::SecretKey;

mod expect;
mod forge;
mod ssh_ca;

use expect::{Expected, PushRun};

/// How to run the demo.
pub struct DemoOptions {
    /// Leave the lab up afterwards.
    pub keep: bool,
    /// Make the first revision fail to build, so that the demo must notice
    /// (for the test that proves it does).
    pub fail_first_build: bool,
}

/// Runs the demo in `dir`, replacing any lab already there.
pub fn run(dir: &Path, lab_binary: PathBuf, options: &DemoOptions) -> Result<()> {
    if dir.join("lab.json").exists() {
        println!("== taking down the lab already in {}", dir.display());
        Lab::open(dir, lab_binary.clone())?.down()?;
    }
    println!("== {}", nix_version()?);
    println!("== a lab: a builder with a signed binary cache, and three hosts with their own network, Nix store and systemd as PID 1");
    let lab_options = LabOptions {
        hosts: 3,
        dir: Some(dir.to_owned()),
        lab_binary,
        owned_by_this_process: false,
        systemd: true,
    };
    let mut lab = Lab::up(&lab_options)?;
    let shown = show(&mut lab, options);
    if options.keep {
        println!("\n== the lab stays up: lab status, lab exec HOST -- CMD (systemctl, journalctl -u deployd), lab down");
        return shown;
    }
    let removed = lab.down();
    match (shown, removed) {
        (Ok(()), Ok(())) => {
            println!("\n== lab removed");
            Ok(())
        }
        (Ok(()), Err(error)) => Err(error.context("taking the lab down")),
        (Err(error), removed) => {
            if let Err(left) = removed {
                eprintln!("lab: taking the lab down: {left:#}");
            }
            Err(error)
        }
    }
}

/// The demo proper, on a lab that is up.
fn show(lab: &mut Lab, options: &DemoOptions) -> Result<()> {
    println!("== a deploy key, trusted by every host's deployd (and the forge service's, to deploy and read; and an SSH CA's certificates)");
    let key = SecretKey::generate("ops-1".parse()?).context("making the deploy key")?;
    let key_file = lab.dir().join("keys/ops-1.secret");
    std::fs::write(&key_file, key.to_key_file_text().as_bytes())?;
    let ci_key = SecretKey::generate("ci-1".parse()?).context("making the service's key")?;
    let trusted = [
        TrustedDeployKey {
            public_key: key.public_key().to_string(),
            may: None,
        },
        TrustedDeployKey {
            public_key: ci_key.public_key().to_string(),
            may: Some(vec!["deploy".into(), "read".into()]),
        },
    ];
    let fleet_ca = ssh_ca::FleetCa::new(lab)?;
    for host in lab.hosts().to_vec() {
        lab.write_deployd_config(&host, &trusted, &fleet_ca.trusted_by(&host.name)?)?;
        lab.start_deployd(&host)?;
    }
    lab.write_push_inventory("")?;
    crate::print_status(lab);
    let operator_state = lab.dir().join("operator");
    let hosts: Vec<String> = lab.hosts().iter().map(|host| host.name.clone()).collect();

    let first = if options.fail_first_build {
        lab.flake_mut().commit_failing_build(&hosts[0])?
    } else {
        lab.flake().head()?
    };
    println!(
        "\n== push --all {}  (build here, sign into the cache, deploy in parallel)",
        &first[..12]
    );
    let pushed = PushRun::run(lab, &key_file, &operator_state, &["--all", &first])?;
    let planned = Expected::every_host_succeeds(&hosts, &first);
    planned
        .check(&pushed, lab, &key_file, &operator_state)
        .context("the first push did not deploy every host")?;
    println!(
        "== as planned: push exited 0, every host runs {}",
        &first[..12]
    );

    let failing = hosts[1].clone();
    let second = lab.flake_mut().commit_failing_switch(&failing)?;
    lab.save()?;
    println!(
        "\n== push --all {}  ({failing}'s new system fails to switch: it rolls back)",
        &second[..12]
    );
    let pushed = PushRun::run(lab, &key_file, &operator_state, &["--all", &second])?;
    let planned = Expected::one_host_rolls_back(&hosts, &failing, (&first, &second));
    planned
        .check(&pushed, lab, &key_file, &operator_state)
        .with_context(|| format!("the second push was to roll back {failing} alone"))?;
    println!(
        "== as planned: push exited 1, {failing} rolled back to {}, the others run {}",
        &first[..12],
        &second[..12]
    );

    fleet_ca.show(lab, &hosts, (&key_file, &operator_state))?;

    println!("\n== push status");
    let status = lab
        .push_command(&key_file, &operator_state)?
        .arg("status")
        .status()
        .context("running push status")?;
    anyhow::ensure!(status.success(), "push status exited with {status}");

    forge::show(lab, &ci_key, (&key_file, &operator_state))
}
