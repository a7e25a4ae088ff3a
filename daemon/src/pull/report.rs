//! Reports to a push serve channel (docs/src/design/channels.md): while a
//! deploy that came from the channel runs, each change of its state is
//! posted to `CHANNEL/reports/<host>` as a [`HostReport`] signed with the
//! host key (one try each: the next change or the final report says more).
//! The final report is retried with backoff (or after the channel's
//! `Retry-After`) until the channel answers 2xx (delivered) or 400, 401, 409
//! or 413 (refused: sending it again would not help), or for
//! [`GIVE_UP_AFTER`]; every other answer may change (a host key not pinned
//! yet, clocks apart, a channel busy or down). Until then a marker under
//! `state_dir/pull/` keeps it pending, and a restarted daemon sends it
//! again.

use std::sync::Arc;
use std::time::Duration;

use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::HostReport;
use tokio_util::sync::CancellationToken;

use super::http::{Answer, ChannelClient};
use crate::api::chain;
use crate::clock::now_ms;
use crate::daemon::Daemon;
use crate::http_url::HttpUrl;
use crate::state::{PendingReport, ReportMarker};

/// How often a running deploy's state is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// The first pause before a final report is sent again; it doubles.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a final report.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a final report is tried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The most of a channel's answer shown in the log.
const SHOWN_BYTES: usize = 200;
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// Follows one deploy and reports it to its channel.
pub struct Reporter {
    /// Where the deploy's record is.
    pub daemon: Arc<Daemon>,
    /// The channel's client.
    pub client: Arc<ChannelClient>,
    /// `CHANNEL/reports/<host>`.
    pub url: HttpUrl,
    /// The channel, for the log.
    pub channel: String,
    /// The "report pending" marker, cleared once the final report is taken.
    pub marker: ReportMarker,
    /// The deploy and the sequence it came from.
    pub pending: PendingReport,
}

impl Reporter {
    /// Reports each state change of the deploy, then its end, until
    /// `stop`.
    pub async fn follow(self, stop: CancellationToken) {
        let mut reported: Option<DeployState> = None;
        loop {
            let Some(deploy) = self.daemon.deploy(self.pending.deploy_id.as_str()) else {
                // No longer kept here: nothing left to report.
                self.clear_marker();
                return;
            };
            let record = deploy.record;
            if record.state.is_final() {
                return self.deliver_final(&record, &stop).await;
            }
            if reported != Some(record.state) {
                if let Err(problem) = self.send(&record).await {
                    log::debug!(
                        "channel {}: report of deploy {} not delivered: {problem}",
                        self.channel,
                        record.deploy_id
                    );
                }
                reported = Some(record.state);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }

    /// Sends the final report until the channel takes or refuses it, or
    /// [`GIVE_UP_AFTER`] passed.
    async fn deliver_final(&self, record: &DeployRecord, stop: &CancellationToken) {
        let started = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut told = false;
        loop {
            let (problem, retry_after) = match self.send(record).await {
                Ok(answer) => match verdict(answer.status) {
                    Verdict::Delivered => {
                        log::info!(
                            deploy_id = record.deploy_id.as_str();
                            "channel {}: reported deploy {} ({})",
                            self.channel, record.deploy_id, record.state
                        );
                        return self.clear_marker();
                    }
                    Verdict::Refused => {
                        log::warn!(
                            deploy_id = record.deploy_id.as_str();
                            "channel {}: refused the report of deploy {} ({}): {}",
                            self.channel,
                            record.deploy_id,
                            answer.status,
                            shown(&answer.body)
                        );
                        return self.clear_marker();
                    }
                    Verdict::Retry => (
                        format!("answered {}: {}", answer.status, shown(&answer.body)),
                        answer.retry_after,
                    ),
                },
                Err(problem) => (problem, None),
            };
            if started.elapsed() >= GIVE_UP_AFTER {
                log::warn!(
                    deploy_id = record.deploy_id.as_str();
                    "channel {}: gave up the report of deploy {} after {} hours ({problem})",
                    self.channel,
                    record.deploy_id,
                    GIVE_UP_AFTER.as_secs() / 3600
                );
                return self.clear_marker();
            }
            if !told {
                log::warn!(
                    "channel {}: the report of deploy {} was not delivered ({problem}); trying again",
                    self.channel,
                    record.deploy_id
                );
                told = true;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(next_wait(backoff, retry_after)) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Posts one signed report of `record`.
    async fn send(&self, record: &DeployRecord) -> Result<Answer, String> {
        let report = HostReport {
            host: self.daemon.config().hostname.clone(),
            sent_at: now_ms() / 1000,
            sequence: Some(self.pending.sequence),
            record: record.clone(),
        };
        let body = report.sign(self.daemon.host_key()).to_json();
        self.client.post(&self.url, body, POST_TIMEOUT).await
    }

    /// Clears this deploy's marker, if it is still there.
    fn clear_marker(&self) {
        if let Err(error) = self.marker.clear(&self.pending.deploy_id) {
            log::warn!(
                "channel {}: cannot clear the pending report: {}",
                self.channel,
                chain(&error)
            );
        }
    }
}

/// What a channel's answer to a final report means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Taken.
    Delivered,
    /// Refused for good: the same report would be refused again.
    Refused,
    /// Worth sending again: the channel or its config may change.
    Retry,
}

/// The verdict of `status`: 2xx delivered; 400, 401, 409, 413 refused for
/// good; anything else (403 before the host key is pinned, 404 before push
/// serve read push.toml, 408, 429, a clock skew's refusal, 5xx) retried.
fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        400 | 401 | 409 | 413 => Verdict::Refused,
        _ => Verdict::Retry,
    }
}

/// The wait before the next try: the channel's `Retry-After` when it gave
/// one, else `backoff`; never more than [`MAX_BACKOFF`].
fn next_wait(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or(backoff).min(MAX_BACKOFF)
}

/// A channel's answer as the log shows it: at most [`SHOWN_BYTES`] bytes,
/// control characters escaped (the channel is not trusted).
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BYTES)]);
    let mut shown = String::new();
    for character in text.trim().chars() {
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    if body.len() > SHOWN_BYTES {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_cannot_change_end_the_tries() {
        assert_eq!(verdict(204), Verdict::Delivered);
        for permanent in [400, 401, 409, 413] {
            assert_eq!(verdict(permanent), Verdict::Refused, "{permanent}");
        }
        for passing in [403, 404, 408, 429, 500, 502, 503] {
            assert_eq!(verdict(passing), Verdict::Retry, "{passing}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let backoff = Duration::from_secs(8);
        assert_eq!(next_wait(backoff, None), backoff);
        assert_eq!(
            next_wait(backoff, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_wait(backoff, Some(Duration::from_secs(86_400))),
            MAX_BACKOFF
        );
    }

    #[test]
    fn an_answer_is_shown_bounded_and_escaped() {
        assert_eq!(shown(b" refused\n"), "refused", "trimmed");
        assert_eq!(shown(b"a\x1b[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        let long = shown(&[b'x'; 10_000]);
        assert_eq!(long.len(), SHOWN_BYTES + 3);
    }
}
