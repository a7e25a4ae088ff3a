//! Admission of a desired state read from a channel
//! (docs/src/design/channels.md): the same checks and rules as
//! `POST /v1/deploy` ([`super::admission`]), in another order of writes.
//! The deploy's record is written first, then the channel's sequence, then
//! the nonce: a crash in between leaves a record whose envelope is found
//! at the next poll, which then commits the sequence and applies nothing
//! again.

use deployd_protocol::{DesiredArrival, RejectError, Request};

use super::admission::{AdmissionError, NewDeploy};
use super::Daemon;
use crate::clock::now_ms;
use crate::state::{ChannelSequence, PendingNonce};

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
        if let Some(recorded) = records.store.find_by_envelope(bytes) {
            let deploy_id = recorded.record.deploy_id.clone();
            channel.sequence.commit(channel.url, sequence)?;
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
        if let Err(error) = channel.sequence.commit(channel.url, sequence) {
            log::error!(
                "channel {}: cannot write the sequence {sequence}: {}",
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
