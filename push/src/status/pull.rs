//! `push status` for a host that pulls (`pull = true`): nobody calls it, so
//! its line comes from the newest report it sent to push serve's channel
//! (`[defaults] channel`, `https://SERVE/v1/channel`), read from
//! `GET CHANNEL/reports/{host}` (push serve verified it against the host's
//! pinned `host_key`). A channel that is not push serve (a static folder,
//! an object store) holds no reports: the line says so.

use std::time::Duration;

use deployd_command::redact::mask_credentials;
use deployd_protocol::{HostReport, MAX_ENVELOPE_BYTES};

use crate::inventory::{Inventory, Target};
use crate::sign::now;
use crate::table;

/// How long the channel may take to answer.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `push status` knows of a host that pulls.
#[derive(Debug)]
pub enum PullStatus {
    /// Its newest report, from the channel.
    Reported {
        /// The channel it was read from.
        channel: String,
        /// The report.
        report: Box<HostReport>,
    },
    /// No report to show, and why (no channel, not push serve, none yet).
    NoReport(String),
    /// The channel did not answer.
    Unreachable(String),
}

/// The newest report of `target` (a host that pulls) from the fleet's channel.
pub async fn read(inventory: &Inventory, target: &Target) -> PullStatus {
    let Some(channel) = inventory.defaults.channel.as_deref() else {
        return PullStatus::NoReport(
            "it pulls, and push.toml names no [defaults] channel to read its reports from".into(),
        );
    };
    let channel = channel.trim_end_matches('/');
    let shown = mask_credentials(channel).into_owned();
    if !channel.ends_with("/v1/channel") || !channel.starts_with("http") {
        return PullStatus::NoReport(format!(
            "it pulls from {shown}, which is not push serve (…/v1/channel): no reports to show"
        ));
    }
    let clients = crate::tls::Clients::new(|builder| builder.timeout(CHANNEL_TIMEOUT));
    let http = match clients.get(&target.trust, false) {
        Ok(http) => http,
        Err(error) => return PullStatus::Unreachable(format!("{shown}: {error}")),
    };
    let url = format!("{channel}/reports/{}", target.name);
    let answer = match http.get(&url).send().await {
        Ok(answer) => answer,
        Err(error) => {
            return PullStatus::Unreachable(format!("{shown}: {}", crate::tls::describe(&error)))
        }
    };
    let push_serve = answer
        .headers()
        .get("deployd-channel")
        .is_some_and(|value| value == "push-serve");
    if !push_serve {
        return PullStatus::NoReport(format!(
            "it pulls from {shown}, which does not answer as push serve: no reports to show"
        ));
    }
    match answer.status().as_u16() {
        200 => match read_report(answer).await {
            Ok(report) => PullStatus::Reported {
                channel: shown,
                report: Box::new(report),
            },
            Err(error) => {
                PullStatus::Unreachable(format!("{shown}: an unreadable report: {error:#}"))
            }
        },
        404 => PullStatus::NoReport(format!(
            "it pulls from {shown}, which has no report of it yet"
        )),
        status => {
            let body = answer.text().await.unwrap_or_default();
            PullStatus::Unreachable(format!(
                "{shown} answered {status}: {}",
                crate::progress::printable(&body.chars().take(200).collect::<String>())
            ))
        }
    }
}

/// The report in a `200` answer, read to at most an envelope's size (a
/// report is smaller: its record is a host's, bounded like its answers).
async fn read_report(answer: reqwest::Response) -> anyhow::Result<HostReport> {
    let body = crate::tls::read_bounded(answer, MAX_ENVELOPE_BYTES).await?;
    Ok(serde_json::from_slice(&body)?)
}

impl PullStatus {
    /// Whether `push status` fails for it (the channel did not answer).
    pub fn failed(&self) -> bool {
        matches!(self, PullStatus::Unreachable(_))
    }

    /// Its JSON: `{"pull": true, "channel", "report"}`, or `"no_report"`,
    /// or `"unreachable"` with why.
    pub fn json(&self) -> serde_json::Value {
        match self {
            PullStatus::Reported { channel, report } => {
                serde_json::json!({ "pull": true, "channel": channel, "report": report })
            }
            PullStatus::NoReport(why) => serde_json::json!({ "pull": true, "no_report": why }),
            PullStatus::Unreachable(why) => {
                serde_json::json!({ "pull": true, "unreachable": why })
            }
        }
    }

    /// Its line of the table (HOST to NOTE, TLS `pull`).
    pub fn row(&self, host: String) -> Vec<String> {
        let dashes = |state: &str, note: String| {
            let mut row = vec![host.clone(), "-".into(), "-".into(), state.to_owned()];
            row.extend(["-".into(), "-".into(), "-".into(), "pull".into(), note]);
            row
        };
        let report = match self {
            PullStatus::Reported { report, .. } => report,
            PullStatus::NoReport(why) => return dashes("-", why.clone()),
            PullStatus::Unreachable(why) => {
                return dashes("unreachable", format!("its channel: {why}"))
            }
        };
        let record = &report.record;
        let rev = record
            .rev
            .as_ref()
            .map_or("-".to_owned(), |rev| rev.as_str()[..12].to_owned());
        let path = record.store_path.as_str();
        let system = path.split_once('-').map_or(path, |(_, name)| name);
        let age = record.finished_at_ms.map_or("-".to_owned(), |at| {
            table::age(now().saturating_sub(at / 1000))
        });
        let mut note = format!(
            "reported {} ago",
            table::age(now().saturating_sub(report.sent_at))
        );
        if let Some(error) = &record.error {
            let error = format!("{}: {}", error.code, error.message);
            note = format!("{note}; {}", crate::progress::printable(&error));
        }
        vec![
            host,
            rev,
            system.to_owned(),
            record.state.to_string(),
            record.deploy_id.to_string(),
            age,
            if record.reboot_required { "yes" } else { "no" }.into(),
            "pull".into(),
            note,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(channel: Option<&str>) -> (Inventory, Target) {
        let defaults = channel.map_or(String::new(), |url| {
            format!("[defaults]\nchannel = \"{url}\"\n")
        });
        let inventory: Inventory =
            toml::from_str(&format!("{defaults}[hosts.pi]\npull = true\n")).expect("push.toml");
        let target = inventory.target(&"pi".parse().expect("host")).expect("pi");
        (inventory, target)
    }

    #[tokio::test]
    async fn a_channel_that_cannot_be_push_serve_is_said_so() {
        for (channel, expected) in [
            (None, "names no [defaults] channel"),
            (
                Some("https://static.example.org/channel"),
                "which is not push serve",
            ),
            (Some("file:///srv/channel"), "which is not push serve"),
        ] {
            let (inventory, target) = inventory(channel);
            let status = read(&inventory, &target).await;
            let PullStatus::NoReport(why) = &status else {
                panic!("{channel:?}: {status:?}");
            };
            assert!(why.contains(expected), "{why}");
            assert!(!status.failed());
            let row = status.row("pi".into());
            assert_eq!(row[7], "pull");
            assert_eq!(row[8], *why);
        }
    }

    #[tokio::test]
    async fn a_report_longer_than_an_envelope_is_not_read() {
        let endless = || async {
            let body = vec![b' '; MAX_ENVELOPE_BYTES + 1];
            ([("deployd-channel", "push-serve")], body)
        };
        let router =
            axum::Router::new().route("/v1/channel/reports/pi", axum::routing::get(endless));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (inventory, target) = inventory(Some(&format!("http://{address}/v1/channel")));
        let status = read(&inventory, &target).await;
        let PullStatus::Unreachable(why) = &status else {
            panic!("{status:?}");
        };
        assert!(
            why.contains(&format!(
                "the answer is longer than {MAX_ENVELOPE_BYTES} bytes"
            )),
            "{why}"
        );
        assert!(status.failed());
    }

    #[test]
    fn a_report_is_a_line_of_the_table() {
        let record: deployd_protocol::api::DeployRecord =
            serde_json::from_value(serde_json::json!({
                "deploy_id": "pi-1", "host": "pi",
                "store_path": "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-pi",
                "action": "switch", "flake": null, "rev": "a".repeat(40), "key": "ci-1",
                "issued_at": 1, "state": "succeeded", "phases": [], "error": null,
                "previous_system": null, "reboot_required": false, "log_tail": [],
                "created_at_ms": 1000, "finished_at_ms": null,
            }))
            .expect("a record");
        let status = PullStatus::Reported {
            channel: "https://serve/v1/channel".into(),
            report: Box::new(HostReport {
                host: "pi".parse().expect("host"),
                sent_at: now(),
                sequence: Some(1),
                record,
            }),
        };
        let row = status.row("pi".into());
        assert_eq!(
            row[..8],
            [
                "pi",
                "aaaaaaaaaaaa",
                "nixos-system-pi",
                "succeeded",
                "pi-1",
                "-",
                "no",
                "pull"
            ]
        );
        assert!(row[8].starts_with("reported "), "{}", row[8]);
        assert_eq!(status.json()["report"]["record"]["deploy_id"], "pi-1");
    }
}
