//! Reports to a push serve channel (docs/src/design/channels.md): while a
//! deploy that came from the channel runs, each change of its state is
//! posted to `CHANNEL/reports/<host>` as a [`HostReport`] signed with the
//! host key (one try each: the next change or the final report says more).
//! The final report is retried with backoff until the channel answers 2xx
//! (delivered) or 4xx (refused: sending it again would not help); until
//! then a marker under `state_dir/pull/` keeps it pending, and a restarted
//! daemon sends it again.

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

    /// Sends the final report until the channel takes or refuses it.
    async fn deliver_final(&self, record: &DeployRecord, stop: &CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut told = false;
        loop {
            let problem = match self.send(record).await {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    log::info!(
                        deploy_id = record.deploy_id.as_str();
                        "channel {}: reported deploy {} ({})",
                        self.channel, record.deploy_id, record.state
                    );
                    return self.clear_marker();
                }
                Ok(answer) if (400..500).contains(&answer.status) => {
                    log::warn!(
                        deploy_id = record.deploy_id.as_str();
                        "channel {}: refused the report of deploy {} ({}): {}",
                        self.channel,
                        record.deploy_id,
                        answer.status,
                        String::from_utf8_lossy(&answer.body).trim()
                    );
                    return self.clear_marker();
                }
                Ok(answer) => format!("answered {}", answer.status),
                Err(problem) => problem,
            };
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
                () = tokio::time::sleep(backoff) => {}
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
