//! A push session: the client, the key and the display that every host's
//! task shares, and the one way a deploy is sent and followed to its end.

use std::sync::Arc;

use deployd_protocol::api::DeployState;
use deployd_protocol::{DeployId, ErrorCode};

use crate::client::{Client, HostError};
use crate::confirm::Confirmer;
use crate::follow::{follow, Update};
use crate::host_error::Cause;
use crate::inventory::Target;
use crate::outcome;
use crate::progress::Progress;
use crate::rollout::RolloutObserver;

/// How often a request that got no answer is sent.
const SEND_ATTEMPTS: u32 = 3;
/// How often a confirm that got no answer is sent (a second apart, well
/// inside any confirmation window).
const CONFIRM_ATTEMPTS: u32 = 5;

/// How often a `busy` host is asked again.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// A signed request that starts a deploy, as it is sent.
pub struct StartRequest {
    /// The endpoint (`/v1/deploy`, `/v1/rollback`).
    pub path: &'static str,
    /// The signed envelope, sent byte for byte (and again, as a retry).
    pub envelope: Vec<u8>,
    /// The deploy it starts.
    pub deploy_id: DeployId,
}

/// What the per-host tasks share.
pub struct Session {
    /// Talks to the hosts.
    pub client: Client,
    /// Signs the confirms.
    pub confirmer: Arc<Confirmer>,
    /// Shows progress.
    pub progress: Progress,
    /// Send and return without following.
    pub no_wait: bool,
    /// How long a `busy` host is asked again (zero: refused at once).
    pub busy_wait: std::time::Duration,
    /// Confirm deploys that wait for it.
    pub confirm: bool,
    /// Told when a host accepts its deploy.
    pub observer: Arc<dyn RolloutObserver>,
}

impl Session {
    /// Sends a signed request that starts a deploy, then follows the
    /// deploy (confirming it when it waits for confirmation).
    pub async fn send_and_follow(&self, target: &Target, request: StartRequest) -> outcome::Result {
        let host = target.name.as_str();
        let StartRequest {
            path,
            envelope,
            deploy_id,
        } = request;
        let id = &deploy_id;
        // The very same envelope again is a retry the host answers with the
        // deploy it started, so a request lost on the way is simply resent.
        let mut attempt = 1;
        let started = std::time::Instant::now();
        let mut waited_for_busy = false;
        loop {
            match self
                .client
                .send_signed(target, path, envelope.clone())
                .await
            {
                Ok(_) => {
                    self.observer.deploying(host, id.as_str());
                    break;
                }
                // No retry changes a certificate push does not trust.
                Err(HostError::Unreachable(why))
                    if attempt < SEND_ATTEMPTS && !matches!(why.cause, Cause::Tls(_)) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(HostError::Unreachable(why)) => {
                    return outcome::Result::Unreachable(why.to_string())
                }
                // One deploy at a time: the one running (another push's, or
                // one a restart left) ends, then this one is taken. The
                // very same envelope again, while its window lasts.
                Err(HostError::Refused(body))
                    if body.error == ErrorCode::Busy && started.elapsed() < self.busy_wait =>
                {
                    if !waited_for_busy {
                        self.progress
                            .note(host, &format!("busy ({}); waiting", body.message));
                        waited_for_busy = true;
                    }
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Err(error) => return outcome::Result::Refused(error.to_string()),
            }
        }
        if self.no_wait {
            return outcome::Result::Sent(id.to_string());
        }
        let followed = follow(&self.client, target, id.as_str(), |update| match update {
            Update::State(state) => {
                self.progress.phase(host, state.as_str());
                if state == DeployState::AwaitingConfirm && self.confirm {
                    self.send_confirm(target, id);
                }
            }
            Update::Log(line) => self.progress.log(host, &line),
            Update::Reconnecting(why) => self.progress.note(host, &format!("reconnecting ({why})")),
        })
        .await;
        match followed {
            Ok(record) if record.deploy_id != *id || record.host != target.name => {
                outcome::Result::Refused(format!(
                    "the host answered with deploy {} on {}, not {id} on {host}",
                    record.deploy_id, record.host
                ))
            }
            Ok(record) => outcome::Result::Ended(Box::new(record)),
            Err(HostError::Unreachable(why)) => outcome::Result::Unreachable(why.to_string()),
            Err(error) => outcome::Result::Refused(error.to_string()),
        }
    }

    /// Sends the signed `confirm` of deploy `id` over a new connection: that
    /// it gets through proves the host still reaches its operator.
    fn send_confirm(&self, target: &Target, id: &DeployId) {
        self.progress.note(target.name.as_str(), "confirming");
        let (progress, target) = (self.progress.clone(), target.clone());
        let (confirmer, id) = (self.confirmer.clone(), id.clone());
        let path = format!("/v1/deploys/{id}/confirm");
        tokio::spawn(async move {
            let host = target.name.to_string();
            let envelope = match confirmer.envelope(&target.name, &id).await {
                Ok(envelope) => envelope,
                Err(error) => {
                    progress.note(&host, &format!("cannot sign the confirm: {error:#}"));
                    return;
                }
            };
            // The same envelope again is a retry the host answers alike:
            // a confirm lost on the way is resent a few times.
            for attempt in 1..=CONFIRM_ATTEMPTS {
                match Client::fresh()
                    .send_signed(&target, &path, envelope.clone())
                    .await
                {
                    Ok(_) => return,
                    Err(HostError::Unreachable(why)) if attempt < CONFIRM_ATTEMPTS => {
                        progress.note(&host, &format!("confirm not through ({why}); again"));
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    Err(error) => {
                        progress.note(&host, &format!("confirm failed: {error}"));
                        return;
                    }
                }
            }
        });
    }
}
