//! `lab demo`: a lab with three hosts, a revision deployed to all of them,
//! then a revision whose switch fails on one host and is rolled back.
//!
//! deployd's daemon and `push` are not built yet, so the demo performs by
//! hand, on each host, the steps deployd automates: fetch the system from
//! the builder's signed cache, set the system profile, switch, and roll back
//! when the switch fails.

use std::path::Path;
use std::path::PathBuf;
use std::thread;

use anyhow::{Context, Result};
use deployd_lab::{nix_version, Lab, LabOptions, Node};

/// Runs the demo in `dir`, replacing any lab already there.
pub fn run(dir: &Path, lab_binary: PathBuf, keep: bool) -> Result<()> {
    if dir.join("lab.json").exists() {
        println!("== taking down the lab already in {}", dir.display());
        Lab::open(dir, lab_binary.clone())?.down()?;
    }
    println!("== {}", nix_version()?);
    println!("== making a lab: a builder and three hosts, each with its own network and Nix store");
    let options = LabOptions {
        hosts: 3,
        dir: Some(dir.to_owned()),
        lab_binary,
        owned_by_this_process: false,
    };
    let mut lab = Lab::up(&options)?;
    crate::print_status(&lab);

    let first = lab.flake().settings().clone();
    let rev = lab.flake().head()?;
    println!(
        "\n== building revision {} on the builder, signing it into the cache",
        &rev[..12]
    );
    let systems = lab.build_and_publish(&rev)?;
    println!("== deploying it to every host in parallel (fetch, set profile, switch)");
    deploy_everywhere(&lab, |host| host.deploy_by_hand(&systems[&host.name]))?;
    crate::print_status(&lab);

    let failing_host = first.hosts[1].clone();
    let rev = lab.flake_mut().commit_failing_switch(&failing_host)?;
    lab.save()?;
    println!(
        "\n== revision {}: {failing_host}'s new system fails to switch",
        &rev[..12]
    );
    let systems = lab.build_and_publish(&rev)?;
    deploy_everywhere(&lab, |host| {
        match host.deploy_by_hand(&systems[&host.name]) {
            Ok(()) => Ok(()),
            Err(error) => {
                println!("   {}: switch failed ({error:#}); rolling back", host.name);
                host.roll_back_by_hand()
            }
        }
    })?;
    crate::print_status(&lab);
    for host in lab.hosts() {
        let log = host.switch_log()?;
        println!(
            "   {} ran switch-to-configuration {} times",
            host.name,
            log.len()
        );
    }
    if keep {
        println!("\n== the lab stays up: lab status, lab exec HOST -- CMD, lab down");
    } else {
        lab.down()?;
        println!("\n== lab removed");
    }
    Ok(())
}

fn deploy_everywhere(lab: &Lab, deploy: impl Fn(&Node) -> Result<()> + Sync) -> Result<()> {
    thread::scope(|scope| {
        let handles: Vec<_> = lab
            .hosts()
            .iter()
            .map(|host| (host, scope.spawn(|| deploy(host))))
            .collect();
        for (host, handle) in handles {
            let outcome = handle
                .join()
                .map_err(|_| anyhow::anyhow!("the deploy of {} panicked", host.name))?;
            outcome.with_context(|| format!("deploying {}", host.name))?;
            println!(
                "   {}: {}",
                host.name,
                host.profile_generation().unwrap_or_default()
            );
        }
        Ok(())
    })
}
