//! One channel's poller: every `[pull] interval_s` (each wait drawn between
//! 0.8 and 1.2 times it), or at once after a push serve long poll ends, it
//! reads the host's desired state. Bytes already seen are skipped without
//! being verified again; new ones go through [`Daemon::accept_desired`].
//! A state refused for good is logged once (its bytes are then known and
//! not verified again); one refused for now (not valid yet, quarantined,
//! the host's state unwritable) is tried again at each poll and logged once
//! while the refusal stays the same. Each refusal is counted as a refused
//! request is; a host busy with another deploy tries again at the next
//! poll. A 304 is followed at once by the next long poll only after a
//! long poll that lasted [`SHORTEST_LONG_POLL`]; else the poller waits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deployd_protocol::{ErrorCode, HostName, RejectError, MAX_ENVELOPE_BYTES};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::http::ChannelClient;
use super::report::Reporter;
use crate::api::{chain, ApiError};
use crate::channel_url::ChannelUrl;
use crate::daemon::{AdmissionError, Channel, Daemon, DesiredAdmission};
use crate::pipeline;
use crate::state::{ChannelSequence, PendingReport, ReportMarker};

/// How long push serve may hold a long poll (it answers `304` then).
pub const LONG_POLL_WAIT_S: u64 = 55;
/// A long poll answered `304` sooner than this is not followed by another
/// at once: the next waits this long (a channel that answers at once must
/// not make the host spin).
pub const SHORTEST_LONG_POLL: Duration = Duration::from_secs(1);
/// How long one exchange may take, besides a long poll's wait.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `interval` scaled by a factor between 0.8 and 1.2 drawn from `random`
/// (uniform over `u32`), so that a fleet does not poll in step.
pub fn jittered(interval: Duration, random: u32) -> Duration {
    let fraction = f64::from(random) / f64::from(u32::MAX);
    interval.mul_f64(0.8 + 0.4 * fraction)
}

/// A random `u32` from the operating system (the middle of the range if
/// it has none to give: the wait is then the interval itself).
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => u32::MAX / 2,
    }
}

/// What a channel holds for this host.
#[derive(Debug)]
enum Fetched {
    /// A desired state's bytes.
    State(Vec<u8>),
    /// Nothing was published for this host.
    NotFound,
    /// Nothing newer: how long the request was held when it was a long
    /// poll.
    NotModified(Option<Duration>),
}

/// When to poll again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// At once (a long poll ended, or a new state was applied).
    Now,
    /// After the jittered interval.
    Later,
    /// After this long.
    After(Duration),
}

/// The poller's memory of its channel.
struct Poller {
    /// Admission, config, counters.
    daemon: Arc<Daemon>,
    /// The channel.
    channel: ChannelUrl,
    /// The channel as text, in logs and in its sequence file.
    name: String,
    /// The HTTP(S) client, and the `ca_file` it was made with.
    client: Option<(Arc<ChannelClient>, Option<std::path::PathBuf>)>,
    /// The last sequence applied from it.
    sequence: ChannelSequence,
    /// The digest of the last bytes verified and taken or refused for good.
    seen: Option<[u8; 32]>,
    /// Whether the channel is push serve (it says so in every answer).
    push_serve: bool,
    /// The last problem logged, so that one is not logged at every poll.
    problem: Option<String>,
}

/// Polls `channel` until `stop`.
pub async fn poll(daemon: Arc<Daemon>, channel: ChannelUrl, stop: CancellationToken) {
    let name = channel.to_string();
    let state_dir = daemon.config().file.state_dir.clone();
    let sequence = match ChannelSequence::load(&state_dir, &name) {
        Ok(sequence) => sequence,
        Err(error) => {
            log::error!(
                "channel {name}: cannot read its sequence, not polling it: {}",
                chain(&error)
            );
            return;
        }
    };
    log::info!("channel {name}: polling it for this host's desired state");
    let mut poller = Poller {
        daemon,
        channel,
        name,
        client: None,
        sequence,
        seen: None,
        push_serve: false,
        problem: None,
    };
    poller.resume_report(&stop);
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = poller.poll_once(&stop) => next,
        };
        let wait = match next {
            Next::Now => Duration::ZERO,
            Next::After(wait) => wait,
            Next::Later => {
                let interval = Duration::from_secs(poller.daemon.config().file.pull.interval_s);
                jittered(interval, random_u32())
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

impl Poller {
    /// One poll. The first answer that shows the channel is push serve
    /// (after a start, or when a channel becomes push serve) is followed at
    /// once by a long poll, rather than after the interval: a host that
    /// restarted hears of the next rollout at once.
    async fn poll_once(&mut self, stop: &CancellationToken) -> Next {
        let was_push_serve = self.push_serve;
        match self.fetch_and_admit(stop).await {
            Next::Later if self.push_serve && !was_push_serve => Next::Now,
            next => next,
        }
    }

    /// Fetches, then skips, admits or logs.
    async fn fetch_and_admit(&mut self, stop: &CancellationToken) -> Next {
        let fetched = match self.fetch().await {
            Ok(fetched) => fetched,
            Err(problem) => {
                self.daemon.count_poll("failed");
                self.tell_once(format!("channel {}: {problem}", self.name));
                return Next::Later;
            }
        };
        let bytes = match fetched {
            Fetched::NotModified(long_poll_held) => {
                self.daemon.count_poll("not_modified");
                return after_not_modified(long_poll_held);
            }
            Fetched::NotFound => {
                self.daemon.count_poll("not_found");
                self.seen = None;
                self.problem = None;
                return Next::Later;
            }
            Fetched::State(bytes) => bytes,
        };
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if self.seen == Some(digest) {
            self.daemon.count_poll("unchanged");
            return Next::Later;
        }
        self.admit(bytes, digest, stop).await
    }

    /// Reads the host's state from the channel.
    async fn fetch(&mut self) -> Result<Fetched, String> {
        let host = self.daemon.config().hostname.clone();
        match &self.channel {
            ChannelUrl::Folder(folder) => {
                let file = ChannelUrl::state_file(folder, &host);
                tokio::task::spawn_blocking(move || read_bounded(&file))
                    .await
                    .map_err(|error| error.to_string())?
            }
            ChannelUrl::Http(base) => {
                let long_poll = self
                    .push_serve
                    .then(|| (self.sequence.last().unwrap_or(0), LONG_POLL_WAIT_S));
                let url = ChannelUrl::state_url(base, &host, long_poll);
                let timeout = REQUEST_TIMEOUT + Duration::from_secs(long_poll.map_or(0, |p| p.1));
                let asked = tokio::time::Instant::now();
                let answer = self.client().get(&url, timeout).await?;
                let held = long_poll.map(|_| asked.elapsed());
                self.push_serve = answer.push_serve;
                match answer.status {
                    200 => Ok(Fetched::State(answer.body)),
                    304 => Ok(Fetched::NotModified(held)),
                    404 => Ok(Fetched::NotFound),
                    status => Err(format!("{url} answered {status}")),
                }
            }
        }
    }

    /// The HTTP(S) client, made again when `[pull] ca_file` changed.
    fn client(&mut self) -> Arc<ChannelClient> {
        let ca_file = self.daemon.config().file.pull.ca_file.clone();
        match &self.client {
            Some((client, made_with)) if *made_with == ca_file => client.clone(),
            _ => {
                let client = Arc::new(ChannelClient::new(ca_file.as_deref()));
                self.client = Some((client.clone(), ca_file));
                client
            }
        }
    }

    /// Verifies and admits new bytes; starts the deploy and its reports.
    async fn admit(&mut self, bytes: Vec<u8>, digest: [u8; 32], stop: &CancellationToken) -> Next {
        let daemon = self.daemon.clone();
        let name = self.name.clone();
        let mut sequence = self.sequence.clone();
        let admitted = tokio::task::spawn_blocking(move || {
            let channel = Channel {
                url: &name,
                sequence: &mut sequence,
            };
            let admission = daemon.accept_desired(&bytes, channel);
            let same_sequence_other_bytes = matches!(
                &admission,
                Err(AdmissionError::Rejected(RejectError::OldSequence { sequence, last }))
                    if sequence == last
            ) && !daemon.has_recorded_envelope(&bytes);
            if let Ok(DesiredAdmission::New(desired)) = &admission {
                let line = format!(
                    "from channel {name}: desired state {} (sequence {})",
                    desired.deploy_id, desired.sequence
                );
                daemon.log(&desired.deploy_id, &line);
                pipeline::spawn(daemon.clone(), desired.deploy_id.clone());
            }
            (admission, sequence, same_sequence_other_bytes)
        })
        .await;
        let (admission, sequence, same_sequence_other_bytes) = match admitted {
            Ok(admitted) => admitted,
            Err(error) => {
                log::error!("channel {}: admission failed: {error}", self.name);
                return Next::Later;
            }
        };
        self.sequence = sequence;
        match admission {
            Ok(DesiredAdmission::New(desired)) => {
                log::info!(
                    deploy_id = desired.deploy_id.as_str();
                    "channel {}: applying desired state {} ({})",
                    self.name, desired.sequence, desired.deploy_id
                );
                self.daemon.count_poll("applied");
                self.seen = Some(digest);
                self.problem = None;
                if self.push_serve {
                    let pending = PendingReport {
                        deploy_id: desired.deploy_id,
                        sequence: desired.sequence,
                    };
                    self.start_report(pending, stop);
                }
                if self.push_serve {
                    Next::Now
                } else {
                    Next::Later
                }
            }
            Ok(DesiredAdmission::AlreadyRecorded(desired)) => {
                log::info!(
                    deploy_id = desired.deploy_id.as_str();
                    "channel {}: desired state {} ({}) was recorded before; its sequence is committed, it is not applied again",
                    self.name, desired.sequence, desired.deploy_id
                );
                self.daemon.count_poll("applied");
                self.seen = Some(digest);
                if self.push_serve {
                    // The final report may not have been sent: the daemon
                    // stopped before it marked it pending.
                    let pending = PendingReport {
                        deploy_id: desired.deploy_id,
                        sequence: desired.sequence,
                    };
                    self.start_report(pending, stop);
                }
                Next::Later
            }
            Err(AdmissionError::Busy(running)) => {
                self.daemon.count_poll("busy");
                self.tell_once(format!(
                    "channel {}: deploy {running} is running; the desired state is tried again at the next poll",
                    self.name
                ));
                Next::Later
            }
            // The state this host applied last, served again (after a
            // restart, its bytes are not known yet): nothing to say. Other
            // bytes with its sequence: two publishers raced.
            Err(AdmissionError::Rejected(RejectError::OldSequence { sequence, last }))
                if sequence == last =>
            {
                self.daemon.count_poll("unchanged");
                self.seen = Some(digest);
                if same_sequence_other_bytes {
                    log::warn!(
                        "channel {}: another state with sequence {sequence} than the one applied; publish again to replace it",
                        self.name
                    );
                }
                Next::Later
            }
            Err(error @ (AdmissionError::State(_) | AdmissionError::Inconsistent(_))) => {
                self.daemon.count_poll("failed");
                self.tell_once(format!(
                    "channel {}: cannot take the desired state: {}",
                    self.name,
                    chain(&error)
                ));
                Next::Later
            }
            Err(refused) => {
                self.daemon.count_poll("refused");
                let refusal = ApiError::from(refused);
                self.daemon.count_refusal(refusal.code());
                let problem = format!(
                    "channel {}: refused its desired state ({}): {}",
                    self.name,
                    refusal.code().as_str(),
                    refusal.message()
                );
                if refused_for_good(refusal.code()) {
                    log::warn!("{problem}");
                    self.seen = Some(digest);
                } else {
                    self.tell_once(problem);
                }
                Next::Later
            }
        }
    }

    /// Logs `problem` unless it is the one logged last.
    fn tell_once(&mut self, problem: String) {
        if self.problem.as_deref() != Some(problem.as_str()) {
            log::warn!("{problem}");
            self.problem = Some(problem);
        }
    }

    /// At start: a deploy from this channel whose final report was not
    /// acknowledged is followed (and reported) again.
    fn resume_report(&mut self, stop: &CancellationToken) {
        let state_dir = self.daemon.config().file.state_dir.clone();
        let pending = ReportMarker::of(&state_dir, &self.name).and_then(|marker| marker.pending());
        match pending {
            Ok(Some(pending)) => {
                // Only push serve channels get a marker.
                self.push_serve = true;
                self.start_report(pending, stop);
            }
            Ok(None) => {}
            Err(error) => log::warn!(
                "channel {}: cannot read its pending report: {}",
                self.name,
                chain(&error)
            ),
        }
    }

    /// Marks `pending` and follows its deploy, reporting each change.
    fn start_report(&mut self, pending: PendingReport, stop: &CancellationToken) {
        let host: HostName = self.daemon.config().hostname.clone();
        let ChannelUrl::Http(base) = &self.channel else {
            return;
        };
        let url = ChannelUrl::reports_url(base, &host);
        let state_dir = self.daemon.config().file.state_dir.clone();
        let marker = match ReportMarker::of(&state_dir, &self.name)
            .and_then(|marker| marker.set(&pending).map(|()| marker))
        {
            Ok(marker) => marker,
            Err(error) => {
                log::warn!(
                    "channel {}: cannot mark the report of deploy {} pending: {}",
                    self.name,
                    pending.deploy_id,
                    chain(&error)
                );
                return;
            }
        };
        let reporter = Reporter {
            daemon: self.daemon.clone(),
            client: self.client(),
            url,
            channel: self.name.clone(),
            marker,
            pending,
        };
        tokio::spawn(reporter.follow(stop.clone()));
    }
}

/// When to poll after a `304`: at once after a long poll held at least
/// [`SHORTEST_LONG_POLL`]; after that long after a shorter one; after the
/// interval when the request was no long poll.
fn after_not_modified(long_poll_held: Option<Duration>) -> Next {
    match long_poll_held {
        Some(held) if held >= SHORTEST_LONG_POLL => Next::Now,
        Some(_) => Next::After(SHORTEST_LONG_POLL),
        None => Next::Later,
    }
}

/// Whether a state refused with `code` would be refused again whenever it
/// is verified (its bytes are then not verified again); `not_yet_valid`,
/// `quarantined` and `internal` may pass later, and are tried at each poll.
fn refused_for_good(code: ErrorCode) -> bool {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::UnknownKey
        | ErrorCode::BadSignature
        | ErrorCode::Forbidden
        | ErrorCode::WrongHost
        | ErrorCode::Expired
        | ErrorCode::Replayed
        | ErrorCode::Downgrade
        | ErrorCode::InvalidStorePath
        | ErrorCode::PayloadTooLarge => true,
        ErrorCode::NotYetValid
        | ErrorCode::Quarantined
        | ErrorCode::Internal
        | ErrorCode::Busy
        | ErrorCode::NotFound => false,
    }
}

/// Reads a folder channel's state file, at most [`MAX_ENVELOPE_BYTES`].
fn read_bounded(file: &Path) -> Result<Fetched, String> {
    use std::io::Read;
    let opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Fetched::NotFound),
        Err(error) => return Err(format!("cannot open {}: {error}", file.display())),
    };
    let mut bytes = Vec::new();
    opened
        .take(MAX_ENVELOPE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_ENVELOPE_BYTES} bytes",
            file.display()
        ));
    }
    Ok(Fetched::State(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_a_fifth_of_the_interval() {
        let interval = Duration::from_secs(60);
        assert_eq!(jittered(interval, 0), Duration::from_secs(48));
        assert_eq!(jittered(interval, u32::MAX), Duration::from_secs(72));
        let middle = jittered(interval, u32::MAX / 2);
        assert!(middle > Duration::from_secs(59) && middle < Duration::from_secs(61));
        for _ in 0..1000 {
            let wait = jittered(interval, random_u32());
            assert!(wait >= Duration::from_secs(48) && wait <= Duration::from_secs(72));
        }
    }

    #[test]
    fn only_refusals_that_cannot_change_mark_a_state_seen() {
        assert!(refused_for_good(ErrorCode::BadSignature));
        assert!(refused_for_good(ErrorCode::Replayed));
        assert!(refused_for_good(ErrorCode::Expired));
        assert!(!refused_for_good(ErrorCode::NotYetValid));
        assert!(!refused_for_good(ErrorCode::Quarantined));
        assert!(!refused_for_good(ErrorCode::Internal));
    }

    #[test]
    fn only_a_long_poll_held_a_second_is_followed_at_once() {
        assert_eq!(after_not_modified(Some(Duration::from_secs(55))), Next::Now);
        assert_eq!(
            after_not_modified(Some(Duration::from_millis(10))),
            Next::After(SHORTEST_LONG_POLL)
        );
        assert_eq!(after_not_modified(None), Next::Later);
    }

    #[test]
    fn a_folder_channel_is_read_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pi.json");
        assert!(matches!(read_bounded(&file), Ok(Fetched::NotFound)));
        std::fs::write(&file, b"{}").expect("write");
        assert!(matches!(read_bounded(&file), Ok(Fetched::State(bytes)) if bytes == b"{}"));
        std::fs::write(&file, vec![b' '; MAX_ENVELOPE_BYTES + 1]).expect("write");
        assert!(read_bounded(&file).is_err());
    }
}
