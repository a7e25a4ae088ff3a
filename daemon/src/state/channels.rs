//! What a pulling host keeps per channel (docs/src/design/channels.md), one
//! file per channel under `state_dir/pull/`, named by a digest of the
//! channel's URL:
//!
//! - `<digest>.json`: the sequence of the last desired state applied from
//!   the channel. A state at or below it is never applied again; it is
//!   written only once the state's deploy is recorded.
//! - `<digest>.report.json`: the deploy whose final report the channel has
//!   not acknowledged yet, so a restarted daemon sends it again.
//!
//! and one file for all channels, `applied.json` ([`AppliedMark`]): the
//! `issued_at` of the newest desired state applied from any channel.

use std::path::{Path, PathBuf};

use deployd_protocol::DeployId;
use sha2::Digest;

use super::{read_json, write_json, StateError};

/// The sequence file of one channel.
#[derive(Debug, Clone)]
pub struct ChannelSequence {
    path: PathBuf,
    last: Option<u64>,
}

/// What the sequence file holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SequenceFile {
    /// The channel, for a person reading the file.
    channel: String,
    /// The last sequence applied.
    last_sequence: u64,
}

/// A deploy started from a channel whose final report was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingReport {
    /// The deploy.
    pub deploy_id: DeployId,
    /// The desired state's sequence it came from.
    pub sequence: u64,
}

/// The file name of `channel`'s state: the first 16 bytes of its URL's
/// SHA-256 in hex (a URL is no file name).
pub fn channel_file_stem(channel: &str) -> String {
    let digest = sha2::Sha256::digest(channel.as_bytes());
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `state_dir/pull/`, created if missing.
fn pull_dir(state_dir: &Path) -> Result<PathBuf, StateError> {
    let dir = state_dir.join("pull");
    std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

impl ChannelSequence {
    /// Loads `channel`'s sequence file under `state_dir` (none yet: no
    /// sequence).
    pub fn load(state_dir: &Path, channel: &str) -> Result<ChannelSequence, StateError> {
        let path = pull_dir(state_dir)?.join(format!("{}.json", channel_file_stem(channel)));
        let last = read_json::<SequenceFile>(&path)?.map(|file| file.last_sequence);
        Ok(ChannelSequence { path, last })
    }

    /// The last sequence applied from the channel.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Writes `sequence` as the last applied (never lowers it), durably.
    pub fn commit(&mut self, channel: &str, sequence: u64) -> Result<(), StateError> {
        if self.last.is_some_and(|last| last >= sequence) {
            return Ok(());
        }
        let file = SequenceFile {
            channel: channel.to_owned(),
            last_sequence: sequence,
        };
        write_json(&self.path, &file)?;
        self.last = Some(sequence);
        Ok(())
    }
}

/// The high-water mark of a pulling host: the `issued_at` of the newest
/// desired state it applied, from any channel. A state issued before it is
/// refused whichever channel serves it, so a channel cannot serve a state
/// that another channel superseded (nor one whose nonce was forgotten).
#[derive(Debug, Clone)]
pub struct AppliedMark {
    path: PathBuf,
    issued_at: Option<u64>,
}

/// What `applied.json` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AppliedFile {
    /// When the newest desired state applied was issued (Unix seconds).
    issued_at: u64,
}

impl AppliedMark {
    /// Loads the mark under `state_dir` (none yet: no mark).
    pub fn load(state_dir: &Path) -> Result<AppliedMark, StateError> {
        let path = pull_dir(state_dir)?.join("applied.json");
        let issued_at = read_json::<AppliedFile>(&path)?.map(|file| file.issued_at);
        Ok(AppliedMark { path, issued_at })
    }

    /// When the newest desired state applied was issued.
    pub fn issued_at(&self) -> Option<u64> {
        self.issued_at
    }

    /// Raises the mark to `issued_at` (never lowers it), durably.
    pub fn commit(&mut self, issued_at: u64) -> Result<(), StateError> {
        if self.issued_at.is_some_and(|mark| mark >= issued_at) {
            return Ok(());
        }
        write_json(&self.path, &AppliedFile { issued_at })?;
        self.issued_at = Some(issued_at);
        Ok(())
    }
}

/// The "report pending" marker of one channel.
#[derive(Debug, Clone)]
pub struct ReportMarker {
    path: PathBuf,
}

impl ReportMarker {
    /// The marker of `channel` under `state_dir`.
    pub fn of(state_dir: &Path, channel: &str) -> Result<ReportMarker, StateError> {
        let path = pull_dir(state_dir)?.join(format!("{}.report.json", channel_file_stem(channel)));
        Ok(ReportMarker { path })
    }

    /// The deploy whose final report is pending, if any.
    pub fn pending(&self) -> Result<Option<PendingReport>, StateError> {
        read_json(&self.path)
    }

    /// Marks `report` as pending, durably.
    pub fn set(&self, report: &PendingReport) -> Result<(), StateError> {
        write_json(&self.path, report)
    }

    /// Clears the marker once the channel acknowledged `deploy_id`'s final
    /// report (or refused it for good), if it still names that deploy: a
    /// newer deploy's marker is left to its own reporter.
    pub fn clear(&self, deploy_id: &DeployId) -> Result<(), StateError> {
        match self.pending()? {
            Some(pending) if pending.deploy_id == *deploy_id => {}
            _ => return Ok(()),
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "removing",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_survives_a_restart_and_never_goes_down() {
        let dir = tempfile::tempdir().expect("temp dir");
        let channel = "https://deploy.example.org/v1/channel";
        let mut sequence = ChannelSequence::load(dir.path(), channel).expect("load");
        assert_eq!(sequence.last(), None);
        sequence.commit(channel, 7).expect("commit");
        sequence.commit(channel, 3).expect("a lower one is ignored");
        let reloaded = ChannelSequence::load(dir.path(), channel).expect("reload");
        assert_eq!(reloaded.last(), Some(7));
        let other = ChannelSequence::load(dir.path(), "file:///srv/channel").expect("load");
        assert_eq!(other.last(), None, "each channel has its own");
        let stem = channel_file_stem(channel);
        assert_eq!(stem.len(), 32);
        assert!(dir
            .path()
            .join("pull")
            .join(format!("{stem}.json"))
            .exists());
    }

    #[test]
    fn a_report_marker_is_set_read_and_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = ReportMarker::of(dir.path(), "http://c/").expect("marker");
        assert_eq!(marker.pending().expect("read"), None);
        let report = PendingReport {
            deploy_id: "d1".parse().expect("id"),
            sequence: 2,
        };
        marker.set(&report).expect("set");
        assert_eq!(marker.pending().expect("read"), Some(report.clone()));
        let older: DeployId = "d0".parse().expect("id");
        marker.clear(&older).expect("another deploy's clear");
        assert_eq!(
            marker.pending().expect("read"),
            Some(report.clone()),
            "the reporter of another deploy leaves the marker alone"
        );
        marker.clear(&report.deploy_id).expect("clear");
        marker
            .clear(&report.deploy_id)
            .expect("clearing twice is fine");
        assert_eq!(marker.pending().expect("read"), None);
    }

    #[test]
    fn the_applied_mark_survives_a_restart_and_never_goes_down() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut mark = AppliedMark::load(dir.path()).expect("load");
        assert_eq!(mark.issued_at(), None);
        mark.commit(1_800_000_000).expect("commit");
        mark.commit(1_700_000_000).expect("an older one is ignored");
        let reloaded = AppliedMark::load(dir.path()).expect("reload");
        assert_eq!(reloaded.issued_at(), Some(1_800_000_000));
        assert!(dir.path().join("pull").join("applied.json").exists());
    }
}
