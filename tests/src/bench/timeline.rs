//! Where a timed `push --all`'s wall time went, host by host: from push's
//! start to the host's deploy being received (push's evaluation, no-op
//! build, cache check, signing, sending), each phase of the deploy as the
//! host's deployd recorded it (`received`, `fetching`, `activating`,
//! `checking_health`), and from the deploy's end to push's exit (following
//! the events, the summary). Read after the timed run from the records
//! deployd keeps on disk, so the reading costs the run nothing.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use deployd_lab::{Lab, Node, DEPLOYD_STATE_DIR};
use deployd_protocol::api::{DeployRecord, DeployState};

use super::report::Spread;

/// The phases shown, in order.
const PHASES: [(DeployState, &str); 4] = [
    (DeployState::Received, "received"),
    (DeployState::Fetching, "fetching"),
    (DeployState::Activating, "activating"),
    (DeployState::CheckingHealth, "checking_health"),
];

/// One host's share of one push.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// From push's start until the deploy was received.
    pub until_received: Duration,
    /// Time in each of [`PHASES`].
    pub phases: [Duration; 4],
    /// From the deploy's end until push exited.
    pub after_end: Duration,
}

/// Every host's timeline of the push that ran from `started` to `ended`.
pub fn read(lab: &Lab, started: SystemTime, ended: SystemTime) -> Result<Vec<Timeline>> {
    let (started, ended) = (unix_ms(started), unix_ms(ended));
    lab.hosts()
        .iter()
        .map(|host| {
            let record = newest_record(host)?;
            let received = record.created_at_ms;
            let finished = record.finished_at_ms.unwrap_or(ended);
            let mut phases = [Duration::ZERO; 4];
            for phase in &record.phases {
                let Some(slot) = PHASES.iter().position(|(state, _)| *state == phase.state) else {
                    continue;
                };
                let end = phase.ended_at_ms.unwrap_or(finished);
                phases[slot] += millis(end.saturating_sub(phase.started_at_ms));
            }
            Ok(Timeline {
                until_received: millis(received.saturating_sub(started)),
                phases,
                after_end: millis(ended.saturating_sub(finished)),
            })
        })
        .collect()
}

/// The deploy `host`'s deployd received last.
fn newest_record(host: &Node) -> Result<DeployRecord> {
    let dir = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys"));
    let mut newest: Option<DeployRecord> = None;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path().join("record.json");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let stored: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        let record: DeployRecord = serde_json::from_value(stored["record"].clone())
            .with_context(|| format!("the record in {}", path.display()))?;
        if newest
            .as_ref()
            .is_none_or(|known| record.created_at_ms > known.created_at_ms)
        {
            newest = Some(record);
        }
    }
    newest.with_context(|| format!("{} has no deploy record", host.name))
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn millis(count: u64) -> Duration {
    Duration::from_millis(count)
}

/// The medians (and spreads) over every host and round, as lines of text.
pub fn table(timelines: &[Timeline]) -> String {
    let mut text = String::new();
    if timelines.is_empty() {
        return text;
    }
    let _ = writeln!(
        text,
        "deployd's wall time per host, s, medians (min-max) over hosts and rounds"
    );
    let mut row = |name: &str, part: &dyn Fn(&Timeline) -> Duration| {
        if let Some(spread) = Spread::of(timelines.iter().map(part)) {
            let _ = writeln!(
                text,
                "  {name:<28} {:>8.2} ({:.2}-{:.2})",
                spread.median, spread.min, spread.max
            );
        }
    };
    row("push start until received", &|timeline| {
        timeline.until_received
    });
    for (index, (_, name)) in PHASES.iter().enumerate() {
        row(name, &|timeline| timeline.phases[index]);
    }
    row("end until push exits", &|timeline| timeline.after_end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_part() {
        let timeline = Timeline {
            until_received: Duration::from_millis(300),
            phases: [
                Duration::from_millis(5),
                Duration::from_millis(900),
                Duration::from_millis(200),
                Duration::from_millis(50),
            ],
            after_end: Duration::from_millis(40),
        };
        let text = table(&[timeline]);
        for part in [
            "push start until received",
            "received",
            "fetching",
            "activating",
            "checking_health",
            "end until push exits",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(
            text.contains("fetching                         0.90 (0.90-0.90)"),
            "{text}"
        );
    }
}
