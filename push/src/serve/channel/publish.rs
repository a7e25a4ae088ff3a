//! A followed branch's pull hosts: push serve publishes each one's deploy
//! to its own channel as the host's next desired state (the sequence held
//! plus one, signed with its deploy key, valid `[channel]
//! desired_lifetime_s`), then waits up to `[channel] report_wait_s` for the
//! host's final report of it, so that its result is the rollout's like any
//! host's (a canary or a batch that pulls gates the next). A report that
//! comes after the wait is put on the commit when it arrives
//! ([`report_on_the_commit`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_protocol::{DeployId, DeployRequest, DesiredState, HostName, HostReport, SecretKey};
use futures_util::future::BoxFuture;

use super::super::statuses::CommitStatus;
use super::super::worker::describe;
use super::super::Service;
use super::summarize;
use crate::outcome::{self, HostResult};
use crate::rollout::{HeldRevision, PullChannel, RolloutObserver};

/// push serve's channel as a rollout delivers to it.
pub struct ServiceChannel {
    /// The service (its channel, its shutdown).
    pub service: Arc<Service>,
    /// Signs the states (push serve's deploy key).
    pub key: Arc<SecretKey>,
}

impl PullChannel for ServiceChannel {
    fn held(&self, host: &HostName) -> Option<HeldRevision> {
        let held = self.service.channel.held(host)?;
        Some(HeldRevision {
            sequence: held.summary.sequence,
            rev: held.summary.rev.and_then(|rev| rev.parse().ok()),
        })
    }

    fn deliver(
        &self,
        host: HostName,
        deploy: DeployRequest,
        checked: Option<u64>,
        observer: Arc<dyn RolloutObserver>,
    ) -> BoxFuture<'static, outcome::Result> {
        let (service, key) = (self.service.clone(), self.key.clone());
        Box::pin(async move {
            let deploy_id = deploy.deploy_id.clone();
            let channel = &service.channel;
            // Before publishing: a report that comes at once is awaited.
            channel.await_report(&host, &deploy_id);
            let sequence = match publish(&service, &key, &host, deploy, checked).await {
                Ok(sequence) => sequence,
                Err(error) => {
                    channel.stop_awaiting(&host, &deploy_id);
                    return outcome::Result::Refused(format!("cannot publish: {error:#}"));
                }
            };
            observer.published(host.as_str(), deploy_id.as_str(), sequence);
            let wait = Duration::from_secs(service.config.channel.report_wait_s);
            wait_for_report(&service, &host, &deploy_id, wait).await;
            let report = channel.stop_awaiting(&host, &deploy_id);
            match report.filter(|kept| ends(&kept.report, &deploy_id)) {
                Some(kept) => outcome::Result::Ended(Box::new(kept.report.record.clone())),
                None => outcome::Result::Published(format!(
                    "published as desired state {sequence}; no final report within {}s (its status comes with the report)",
                    wait.as_secs()
                )),
            }
        })
    }
}

/// Whether `report` says `deploy_id` ended.
fn ends(report: &HostReport, deploy_id: &DeployId) -> bool {
    report.record.deploy_id == *deploy_id && report.record.state.is_final()
}

/// Publishes `deploy` for `host` as the state after the one held; its
/// sequence. The state held must still be the one whose revision the
/// rollout checked (`checked`, its sequence; `None`: nothing was held):
/// one `push publish` put meanwhile is not replaced unchecked.
pub(super) async fn publish(
    service: &Service,
    key: &SecretKey,
    host: &HostName,
    deploy: DeployRequest,
    checked: Option<u64>,
) -> Result<u64> {
    let channel = &service.channel;
    let _one_at_a_time = channel.lock_publishing().await;
    let held = channel.held(host).map(|held| held.summary.sequence);
    if held != checked {
        match held {
            Some(now) => bail!("the channel changed meanwhile: {now} held now"),
            None => bail!("the channel changed meanwhile: nothing held now"),
        }
    }
    let sequence = match held {
        None => 1,
        Some(held) => held.checked_add(1).with_context(|| {
            format!("the channel holds sequence {held}, the last there is: no state can follow it")
        })?,
    };
    let state = DesiredState::new(
        host.clone(),
        deploy,
        sequence,
        crate::sign::now(),
        service.config.channel.desired_lifetime_s,
    );
    let bytes = state.sign(&[key]).to_json();
    let summary = summarize(&bytes).context("the state just signed")?;
    channel.hold(host, bytes, summary, true).await?;
    log::info!(host = host.as_str(); "published desired state {sequence} for {host}");
    Ok(sequence)
}

/// Waits until `host` reports `deploy_id` ended, `wait` passes, or the
/// service stops.
async fn wait_for_report(service: &Service, host: &HostName, deploy_id: &DeployId, wait: Duration) {
    let mut reports = service.channel.watch_reports(host);
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        let ended = reports
            .borrow_and_update()
            .as_ref()
            .is_some_and(|kept| ends(&kept.report, deploy_id));
        if ended {
            return;
        }
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            () = &mut deadline => return,
            () = service.shutdown.cancelled() => return,
        }
    }
}

/// A report no rollout waits for: when it says a deploy push serve
/// published for a followed branch ended, its result goes on that commit.
pub fn report_on_the_commit(service: &Service, host: &HostName, report: &HostReport) {
    let Some(held) = service.channel.held(host) else {
        return;
    };
    let published_here = held.signed_by_service
        && held.summary.deploy_id.as_deref() == Some(report.record.deploy_id.as_str());
    let Some(sha) = held.summary.rev.filter(|_| published_here) else {
        return;
    };
    if !report.record.state.is_final() {
        return;
    }
    let result = HostResult {
        host: host.to_string(),
        rev: None,
        result: outcome::Result::Ended(Box::new(report.record.clone())),
        elapsed: Duration::ZERO,
        batch: None,
    };
    let (state, description) = describe(&result);
    service.statuses.post(CommitStatus {
        sha,
        host: host.to_string(),
        state,
        description,
        // The rollout that published it may be long over: the host's page.
        target_url: service.config.page_url(&format!("/hosts/{host}")),
    });
}
