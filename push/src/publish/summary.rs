//! What `push publish` prints: a table of each host's result (or JSON with
//! `--json`), then why each host that failed did.

use deployd_protocol::{HostName, Revision, StorePath};

use crate::table;

/// A state written.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its sequence.
    pub sequence: u64,
    /// The revision it deploys.
    pub rev: Revision,
    /// The system it deploys.
    pub system: StorePath,
    /// Where it was written (credentials masked).
    pub channel: String,
}

/// How one host ended.
#[derive(Debug, Clone)]
pub enum HostResult {
    /// Its state is in the channel.
    Published(Published),
    /// Not published: a downgrade, or what the channel holds is unreadable.
    Refused(String),
    /// Its system did not build.
    BuildFailed(String),
    /// The channel could not be read or written, or the state not signed.
    Failed(String),
}

/// One host's line.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The host.
    pub host: HostName,
    /// The revision asked for.
    pub rev: Revision,
    /// What happened.
    pub result: HostResult,
}

impl Outcome {
    /// `host`'s state was written.
    pub fn published(host: &HostName, published: Published) -> Outcome {
        Outcome {
            host: host.clone(),
            rev: published.rev.clone(),
            result: HostResult::Published(published),
        }
    }

    /// `host` was refused, for `why`.
    pub fn refused(host: &HostName, rev: &Revision, why: String) -> Outcome {
        Outcome {
            host: host.clone(),
            rev: rev.clone(),
            result: HostResult::Refused(why),
        }
    }

    /// `host`'s system did not build.
    pub fn build_failed(host: &HostName, rev: &Revision, why: String) -> Outcome {
        Outcome {
            host: host.clone(),
            rev: rev.clone(),
            result: HostResult::BuildFailed(why),
        }
    }

    /// `host`'s state could not be read, signed or written.
    pub fn failed(host: &HostName, rev: &Revision, error: &anyhow::Error) -> Outcome {
        let why = crate::inventory::one_line(&format!("{error:#}"));
        let why = deployd_command::redact::mask_credentials(&why).into_owned();
        Outcome {
            host: host.clone(),
            rev: rev.clone(),
            result: HostResult::Failed(why),
        }
    }

    /// Whether its state was written.
    pub fn succeeded(&self) -> bool {
        matches!(self.result, HostResult::Published(_))
    }

    fn word(&self) -> &'static str {
        match self.result {
            HostResult::Published(_) => "published",
            HostResult::Refused(_) => "refused",
            HostResult::BuildFailed(_) => "build_failed",
            HostResult::Failed(_) => "failed",
        }
    }

    fn reason(&self) -> Option<&str> {
        match &self.result {
            HostResult::Published(_) => None,
            HostResult::Refused(why) | HostResult::BuildFailed(why) | HostResult::Failed(why) => {
                Some(why)
            }
        }
    }
}

/// The table, then the reasons of the hosts that were not published.
pub fn table(outcomes: &[Outcome]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|outcome| {
            let (sequence, system, channel) = match &outcome.result {
                HostResult::Published(published) => (
                    published.sequence.to_string(),
                    published.system.to_string(),
                    published.channel.clone(),
                ),
                _ => ("-".into(), "-".into(), "-".into()),
            };
            vec![
                outcome.host.to_string(),
                outcome.word().to_owned(),
                sequence,
                outcome.rev.as_str()[..12].to_owned(),
                system,
                channel,
            ]
        })
        .collect();
    let mut text = table::render(
        &["HOST", "RESULT", "SEQUENCE", "REV", "STORE PATH", "CHANNEL"],
        &rows,
    );
    for outcome in outcomes {
        if let Some(why) = outcome.reason() {
            text.push_str(&format!("{}: {}\n", outcome.host, why));
        }
    }
    text
}

/// One JSON object per host.
pub fn json(outcomes: &[Outcome]) -> String {
    let hosts: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|outcome| {
            let published = match &outcome.result {
                HostResult::Published(published) => Some(published),
                _ => None,
            };
            serde_json::json!({
                "host": outcome.host.as_str(),
                "result": outcome.word(),
                "sequence": published.map(|p| p.sequence),
                "rev": outcome.rev.as_str(),
                "store_path": published.map(|p| p.system.to_string()),
                "channel": published.map(|p| p.channel.clone()),
                "reason": outcome.reason(),
            })
        })
        .collect();
    serde_json::Value::from(hosts).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_host_and_the_reasons_below() {
        let rev: Revision = "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("rev");
        let published = Published {
            sequence: 8,
            rev: rev.clone(),
            system: "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
                .parse()
                .expect("path"),
            channel: "file:///srv/channel".into(),
        };
        let outcomes = [
            Outcome::published(&"pi".parse().expect("host"), published),
            Outcome::refused(&"laptop".parse().expect("host"), &rev, "a downgrade".into()),
        ];
        let text = table(&outcomes);
        assert!(
            text.starts_with("HOST    RESULT     SEQUENCE  REV"),
            "{text}"
        );
        assert!(text.contains("pi      published  8         0123456789ab  /nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x  file:///srv/channel"), "{text}");
        assert!(text.ends_with("laptop: a downgrade\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&json(&outcomes)).expect("json");
        assert_eq!(json[0]["sequence"], 8);
        assert_eq!(json[1]["result"], "refused");
        assert_eq!(json[1]["sequence"], serde_json::Value::Null);
    }
}
