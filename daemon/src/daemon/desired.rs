//! Admission of a desired state read from a channel
//! (docs/src/design/channels.md): the same checks and rules as
//! `POST /v1/deploy` ([`super::admission`]), in another order of writes.
//! The deploy's record is written first, then the channel's sequence and
//! the host's high-water mark ([`AppliedMark`]), then the nonce: a crash in
//! between leaves a record whose envelope is found at the next poll, which
//! then commits them and applies nothing again. A state issued before the
//! mark is refused, whichever channel serves it.

use deployd_protocol::{DesiredArrival, RejectError, Request};

use super::admission::{AdmissionError, NewDeploy};
use super::Daemon;
use crate::clock::now_ms;
use crate::state::{AppliedMark, ChannelSequence, PendingNonce, StateError};

/// What an accepted desired state leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredAdmission {
    /// A new deploy, recorded: its pipeline is to be started.
    New(Desired),
    /// Its deploy was recorded before (the daemon stopped between the
    /// record and the sequence's commit): the sequence is committed now,
    /// and nothing is applied again.
    AlreadyRecorded(Desired),
}

/// Which deploy a desired state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The deploy's id.
    pub deploy_id: deployd_protocol::DeployId,
    /// The state's sequence in its channel.
    pub sequence: u64,
}

/// Where a desired state comes from.
pub struct Channel<'a> {
    /// The channel's URL, as the config has it.
    pub url: &'a str,
    /// Its sequence file.
    pub sequence: &'a mut ChannelSequence,
}

impl Daemon {
    /// Whether `bytes` are the envelope of a deploy this host recorded.
    pub fn has_recorded_envelope(&self, bytes: &[u8]) -> bool {
        self.records().store.find_by_envelope(bytes).is_some()
    }

    /// Verifies a desired state read from `channel` and records its deploy,
    /// through the rules of every deploy (id, quarantine, busy). A refusal
    /// records nothing, and commits neither nonce nor sequence.
    pub fn accept_desired(
        &self,
        bytes: &[u8],
        channel: Channel<'_>,
    ) -> Result<DesiredAdmission, AdmissionError> {
        let mut records = self.records();
        let records = &mut *records;
        let mut channel = channel;
        let arrival = DesiredArrival {
            last_sequence: channel.sequence.last(),
            active_issued_at: records.store.active().map(|active| active.issued_at),
            max_age_s: self.config().file.pull.max_desired_age_s,
        };
        let mut pending = PendingNonce::default();
        let verifying = &mut records.nonces.verifying(&mut pending);
        let desired = match self.verifier().verify_desired(bytes, &arrival, verifying) {
            Ok(desired)
                if records
                    .nonces
                    .may_have_seen(desired.verified.message.issued_at) =>
            {
                return Err(AdmissionError::Replayed)
            }
            Ok(desired) => desired,
            Err(RejectError::Replayed { .. }) => return Err(AdmissionError::Replayed),
            Err(error) => return Err(error.into()),
        };
        let sequence = desired.sequence;
        let issued_at = desired.verified.message.issued_at;
        let mut mark = AppliedMark::load(&self.config().file.state_dir)?;
        let recorded = records.store.find_by_envelope(bytes);
        // Two states published within one second share their `issued_at`:
        // only an earlier one is stale.
        let after_mark = mark.issued_at().is_none_or(|mark| issued_at >= mark);
        if !after_mark {
            return Err(AdmissionError::IssuedBeforeLastApplied);
        }
        if let Some(recorded) = recorded {
            let deploy_id = recorded.record.deploy_id.clone();
            commit_applied(&mut channel, &mut mark, sequence, issued_at)?;
            records.nonces.commit(pending, now_ms() / 1000)?;
            return Ok(DesiredAdmission::AlreadyRecorded(Desired {
                deploy_id,
                sequence,
            }));
        }
        let message = desired.verified.message;
        let window = (message.issued_at, message.expires_at);
        let Request::Deploy(request) = message.request else {
            return Err(AdmissionError::Inconsistent(
                "the verifier passed a desired state that is no deploy".into(),
            ));
        };
        let new = NewDeploy::requested(request, desired.verified.key, window);
        let deploy = self.prepare_new(records, new)?;
        records.store.insert(deploy.clone(), bytes)?;
        // Recorded: the deploy goes ahead whatever follows. A sequence or
        // nonce that cannot be written now is written at the next poll,
        // which finds the envelope recorded.
        if let Err(error) = commit_applied(&mut channel, &mut mark, sequence, issued_at) {
            log::error!(
                "channel {}: cannot write the sequence {sequence} or the applied mark: {}",
                channel.url,
                crate::api::chain(&error)
            );
        } else if let Err(error) = records.nonces.commit(pending, now_ms() / 1000) {
            log::error!("cannot write the nonces: {}", crate::api::chain(&error));
        }
        self.open_new(&deploy);
        Ok(DesiredAdmission::New(Desired {
            deploy_id: deploy.record.deploy_id,
            sequence,
        }))
    }
}

/// Commits `sequence` as the channel's last, then raises the host's
/// high-water mark to `issued_at`.
fn commit_applied(
    channel: &mut Channel<'_>,
    mark: &mut AppliedMark,
    sequence: u64,
    issued_at: u64,
) -> Result<(), StateError> {
    channel.sequence.commit(channel.url, sequence)?;
    mark.commit(issued_at)
}
