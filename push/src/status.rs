//! `push status [--host H]... [--on NAMES]`: a table of the inventory's
//! hosts (all, or those selected: [`crate::selection`]): current
//! revision and system, state, last deploy and its age, reboot needed,
//! whether it is reached over TLS, and in the note how many systems it
//! holds in quarantine. Unreachable hosts are marked, and so is
//! a host that answers under another name than the inventory's (a deploy
//! to it would be refused as `wrong_host`: the address is another
//! machine's); the exit status is 1 when one is. With `--json`, one JSON
//! object instead: each host's name to `{"url": <its deployd>, "status":
//! <its GET /v1/status answer>}` (with `"wrong_host": "<the name it
//! gave>"` when it answers under another) or `{"url": ..., "unreachable":
//! "<why>"}`. A host that pulls (`pull = true`) is not called: its line
//! is its newest report to push serve's channel ([`pull`]), marked `pull`
//! (JSON: `{"pull": true, "report": ...}`).

mod pull;

use std::process::ExitCode;

use anyhow::Result;
use deployd_protocol::api::StatusResponse;
use deployd_protocol::HostName;

use crate::client::Client;
use crate::flake::FlakeArg;
use crate::inventory::{Inventory, Target};
use crate::selection::Selection;
use crate::sign::now;
use crate::table;

/// Options of `push status`.
#[derive(Debug, clap::Args)]
pub struct StatusOptions {
    /// Only these hosts (default: all of the inventory).
    #[command(flatten)]
    pub selection: Selection,
    /// The flake's directory (push.toml in it or a parent), or DIR#HOST
    /// to show HOST.
    #[arg(long, value_name = "DIR[#HOST]", default_value = ".")]
    pub flake: FlakeArg,
    /// Print JSON for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `push status --help` says about its exit statuses.
pub const EXIT_HELP: &str = "Exit status: 0 every host answered under its own name; 1 at least \
                             one host is unreachable or answers under another name (a deploy \
                             would be refused as wrong_host); 2 bad usage, config or input.";

/// Runs `push status`.
pub async fn run(options: StatusOptions) -> Result<ExitCode> {
    let inventory = Inventory::load(&options.flake.dir)?;
    let mut selection = options.selection.and_host(options.flake.host.as_ref());
    selection.all |= selection.is_empty();
    let targets = inventory.select(&selection)?;
    let client = Client::new(crate::keys::reading_key(&inventory)?);
    let asks = targets.iter().map(|target| {
        let (client, inventory) = (client.clone(), &inventory);
        async move {
            let pulls = inventory
                .hosts
                .get(&target.name)
                .is_some_and(|entry| entry.pull);
            let answer = if pulls {
                HostAnswer::Pull(pull::read(inventory, target).await)
            } else {
                HostAnswer::Called(client.status(target).await)
            };
            (target.clone(), answer)
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let unreachable = answers.iter().any(|(_, answer)| match answer {
        HostAnswer::Called(answer) => answer.is_err(),
        HostAnswer::Pull(status) => status.failed(),
    });
    let misnamed: Vec<(&Target, &HostName)> = answers
        .iter()
        .filter_map(|(target, answer)| match answer {
            HostAnswer::Called(Ok(status)) => Some((target, other_name(target, status)?)),
            _ => None,
        })
        .collect();
    for (target, name) in &misnamed {
        eprintln!(
            "push: warning: {} ({}) answers as {name}: a deploy to {} would be refused (wrong_host); is its address another machine's?",
            target.name, target.url, target.name
        );
    }
    let failed = unreachable || !misnamed.is_empty();
    if options.json {
        let json = json(answers).to_string();
        println!("{}", deployd_command::redact::mask_credentials(&json));
    } else {
        print!("{}", table(answers));
    }
    Ok(crate::exit::hosts(failed))
}

/// The name `status` gives, when it is not the inventory's name for `target`.
fn other_name<'a>(target: &Target, status: &'a StatusResponse) -> Option<&'a HostName> {
    (status.hostname != target.name).then_some(&status.hostname)
}

/// What `push status` learnt of a host.
// One per host, for the run's length: boxing the status would buy nothing.
#[allow(clippy::large_enum_variant)]
enum HostAnswer {
    /// Called: its `/v1/status`, or why not.
    Called(Result<StatusResponse, crate::client::HostError>),
    /// It pulls: its newest report on the channel, or why none.
    Pull(pull::PullStatus),
}

type Answer = (Target, HostAnswer);

fn json(answers: Vec<Answer>) -> serde_json::Value {
    let hosts: serde_json::Map<String, serde_json::Value> = answers
        .into_iter()
        .map(|(target, answer)| {
            let value = match answer {
                HostAnswer::Pull(status) => status.json(),
                HostAnswer::Called(Ok(status)) => match other_name(&target, &status) {
                    Some(name) => serde_json::json!({
                        "url": target.url, "status": status, "wrong_host": name,
                    }),
                    None => serde_json::json!({ "url": target.url, "status": status }),
                },
                HostAnswer::Called(Err(error)) => {
                    serde_json::json!({ "url": target.url, "unreachable": error.to_string() })
                }
            };
            (target.name.to_string(), value)
        })
        .collect();
    serde_json::Value::Object(hosts)
}

fn table(answers: Vec<Answer>) -> String {
    let rows: Vec<Vec<String>> = answers
        .into_iter()
        .map(|(target, answer)| {
            let tls = if target.https() { "yes" } else { "no" };
            let answer = match answer {
                HostAnswer::Pull(status) => return status.row(target.name.to_string()),
                HostAnswer::Called(answer) => answer,
            };
            let mut row = match answer {
                Ok(status) => {
                    let mut row = row(target.name.to_string(), &status);
                    if let Some(name) = other_name(&target, &status) {
                        row[3] = format!("wrong_host({name})");
                    }
                    row
                }
                Err(error) => {
                    let mut row = vec![target.name.to_string(), "-".into(), "-".into()];
                    row.extend(["unreachable".into(), "-".into(), "-".into(), "-".into()]);
                    row.push(error.to_string());
                    row
                }
            };
            // Before the note, which stays last (it is the longest).
            row.insert(row.len() - 1, tls.to_owned());
            row
        })
        .collect();
    table::render(
        &[
            "HOST",
            "REV",
            "SYSTEM",
            "STATE",
            "LAST DEPLOY",
            "AGE",
            "REBOOT",
            "TLS",
            "NOTE",
        ],
        &rows,
    )
}

fn row(host: String, status: &StatusResponse) -> Vec<String> {
    let rev = status
        .current_deploy
        .as_ref()
        .and_then(|deploy| deploy.rev.as_ref())
        .map_or("-".to_owned(), |rev| rev.as_str()[..12].to_owned());
    let system = status
        .current_system
        .as_deref()
        .map_or("-".to_owned(), |path| {
            path.split_once('-')
                .map_or(path, |(_, name)| name)
                .to_owned()
        });
    let (state, last, age) = match (&status.active_deploy, &status.last_deploy) {
        (Some(active), _) => (
            active.state.to_string(),
            active.deploy_id.to_string(),
            "-".to_owned(),
        ),
        (None, Some(last)) => (
            last.state.to_string(),
            last.deploy_id.to_string(),
            last.finished_at_ms.map_or("-".to_owned(), |at| {
                table::age(now().saturating_sub(at / 1000))
            }),
        ),
        (None, None) => ("-".into(), "-".into(), "-".into()),
    };
    let mut note = match &status.last_deploy {
        Some(last) if status.active_deploy.is_none() => {
            crate::progress::printable(&last.error.clone().unwrap_or_default())
        }
        _ => String::new(),
    };
    if !status.quarantined.is_empty() {
        let count = format!("{} quarantined", status.quarantined.len());
        note = if note.is_empty() {
            count
        } else {
            format!("{count}; {note}")
        };
    }
    vec![
        host,
        rev,
        system,
        state,
        last,
        age,
        if status.reboot_required { "yes" } else { "no" }.into(),
        note,
    ]
}

#[cfg(test)]
mod tests {
    use deployd_protocol::api::{DeployState, QuarantinedPath, StatusResponse};

    #[test]
    fn the_note_counts_the_quarantined_systems() {
        let mut status: StatusResponse = serde_json::from_value(serde_json::json!({
            "hostname": "sambirano", "current_system": null, "booted_system": null,
            "generations": [], "current_deploy": null, "active_deploy": null,
            "last_deploy": null, "reboot_required": false, "daemon_version": "0",
            "nix_version": null,
        }))
        .expect("an answer without quarantined (an older daemon) parses");
        assert!(status.quarantined.is_empty());
        assert_eq!(super::row("sambirano".into(), &status)[7], "");
        status.quarantined.push(QuarantinedPath {
            store_path: "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
                .parse()
                .expect("path"),
            deploy_id: "d-1".parse().expect("id"),
            state: DeployState::RolledBack,
            ended_at_ms: 1,
            until_ms: 2,
        });
        assert_eq!(super::row("sambirano".into(), &status)[7], "1 quarantined");
    }
}
