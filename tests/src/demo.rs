//! `lab demo`: a builder and three hosts running deployd; `push` deploys a
//! revision of the toy flake to all three with live progress, then a
//! revision whose switch fails on one host, which rolls itself back; then
//! `push status`.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context, Result};
use deployd_lab::{nix_version, Lab, LabOptions, TrustedDeployKey};
use deployd_protocol::SecretKey;

/// Runs the demo in `dir`, replacing any lab already there.
pub fn run(dir: &Path, lab_binary: PathBuf, keep: bool) -> Result<()> {
    if dir.join("lab.json").exists() {
        println!("== taking down the lab already in {}", dir.display());
        Lab::open(dir, lab_binary.clone())?.down()?;
    }
    println!("== {}", nix_version()?);
    println!("== a lab: a builder with a signed binary cache, and three hosts with their own network and Nix store");
    let options = LabOptions {
        hosts: 3,
        dir: Some(dir.to_owned()),
        lab_binary,
        owned_by_this_process: false,
    };
    let mut lab = Lab::up(&options)?;

    println!("== a deploy key, trusted by every host's deployd");
    let key = SecretKey::generate("ops-1".parse()?).context("making the deploy key")?;
    let key_file = lab.dir().join("keys/ops-1.secret");
    std::fs::write(&key_file, key.to_key_file_text().as_bytes())?;
    let trusted = [TrustedDeployKey {
        public_key: key.public_key().to_string(),
        may: None,
    }];
    for host in lab.hosts().to_vec() {
        lab.write_deployd_config(&host, &trusted, "")?;
        lab.start_deployd(&host)?;
    }
    lab.write_push_inventory("")?;
    crate::print_status(&lab);
    let operator_state = lab.dir().join("operator");

    let rev = lab.flake().head()?;
    println!(
        "\n== push --all {}  (build here, sign into the cache, deploy in parallel)",
        &rev[..12]
    );
    let pushed = push(&lab, &key_file, &operator_state, &["--all", &rev])?;
    println!("== push exited with {pushed}");

    let failing = lab.hosts()[1].name.clone();
    let rev = lab.flake_mut().commit_failing_switch(&failing)?;
    lab.save()?;
    println!(
        "\n== push --all {}  ({failing}'s new system fails to switch: it rolls back)",
        &rev[..12]
    );
    let pushed = push(&lab, &key_file, &operator_state, &["--all", &rev])?;
    println!("== push exited with {pushed} (1: a host rolled back)");

    println!("\n== push status");
    push(&lab, &key_file, &operator_state, &["status"])?;
    if keep {
        println!("\n== the lab stays up: lab status, lab exec HOST -- CMD, lab down");
    } else {
        lab.down()?;
        println!("\n== lab removed");
    }
    Ok(())
}

/// Runs push with the terminal's output, so its live progress shows.
fn push(lab: &Lab, key_file: &Path, state: &Path, args: &[&str]) -> Result<ExitStatus> {
    lab.push_command(key_file, state)?
        .args(args)
        .status()
        .context("running push")
}
