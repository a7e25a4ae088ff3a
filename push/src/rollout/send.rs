//! Sending the hosts their deploys, batch by batch (see [`crate::batches`]):
//! a batch starts when every host of the one before reached its final
//! verdict, and none starts once more hosts failed than the budget allows
//! (those are reported `not_started`, with the failures that stopped them).
//!
//! Signing: a batch is signed when it starts, never before, so however
//! long the batches before it took, its messages are fresh (one signature
//! per batch with `ssh-agent`: one touch of a security key; one message per
//! host with a key file). With `--parallel N` smaller than a batch, the
//! batch goes in groups of N hosts, each group signed when it starts and
//! started when the group before it ended. Groups, rather than a sliding
//! window of N hosts: a window would start one host at a time, so either
//! each host is signed on its own (with an agent, a touch per host) or a
//! message signed ahead may expire while it waits. A group is sent at once,
//! so no message waits longer than a host's `busy` retries, which end
//! within the message's lifetime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use deployd_protocol::{HostName, Message, StorePath};

use super::{Results, Rollout, RolloutObserver};
use crate::batches::{Batch, BatchName, Budget};
use crate::client::Client;
use crate::confirm::Confirmer;
use crate::inventory::Target;
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::session::{Session, StartRequest};
use crate::sign::{self, DeployDetails};

/// What sending needs besides the hosts.
pub(super) struct Sender<'a> {
    /// The rollout.
    pub plan: &'a Rollout,
    /// The flake reference built, for the record.
    pub flake: &'a str,
    /// Talks to the hosts.
    pub client: Client,
    /// Shows progress.
    pub progress: Progress,
    /// Told how each host gets on.
    pub observer: Arc<dyn RolloutObserver>,
    /// Every host's result.
    pub results: &'a Results,
    /// The sequence each pulling host's channel held when its downgrade
    /// check passed (`None`: nothing was held).
    pub pull_checked: BTreeMap<HostName, Option<u64>>,
}

/// Sends `batches` in turn; `ready` holds the hosts that may be sent a
/// deploy (the others already have their result) and their systems.
pub(super) async fn send_batches(
    sender: &Sender<'_>,
    batches: &[Batch],
    ready: &BTreeMap<HostName, (Target, StorePath)>,
) {
    let settings = &sender.plan.settings;
    let staged = settings.policy.is_staged();
    let numbered = batches
        .iter()
        .filter(|batch| batch.name != BatchName::Canary)
        .count();
    let mut budget = Budget::new(&settings.policy);
    let results = sender.results;
    for batch in batches {
        if staged {
            results.set_batch(&batch.hosts, batch.name);
        }
        if let Some(why) = budget.stop() {
            for host in batch.hosts.iter().filter(|host| !results.has(host)) {
                results.add_unsent(host, outcome::Result::NotStarted(why.clone()));
            }
            continue;
        }
        if staged {
            let names: Vec<&str> = batch.hosts.iter().map(HostName::as_str).collect();
            let title = match batch.name {
                BatchName::Canary => "canary".to_owned(),
                BatchName::Number(number) => format!("batch {number} of {numbered}"),
            };
            eprintln!("push: {title}: {}", names.join(", "));
        }
        let hosts: Vec<(Target, StorePath)> = batch
            .hosts
            .iter()
            .filter_map(|host| ready.get(host).cloned())
            .collect();
        let size = settings.parallel.unwrap_or(hosts.len()).max(1);
        for group in hosts.chunks(size) {
            send_group(sender, group).await;
        }
        // A host that was unreachable, refused or did not build counts as
        // a failure of its batch.
        for host in batch.hosts.iter().filter(|host| results.failed(host)) {
            budget.failed(host, batch.name);
        }
    }
}

/// Sends the deploys of `group` and follows them to their end: the hosts
/// that pull through the rollout's channel ([`super::pull`]), the others
/// called, all at once.
async fn send_group(sender: &Sender<'_>, group: &[(Target, StorePath)]) {
    let (pulling, called): (Vec<_>, Vec<_>) = group
        .iter()
        .cloned()
        .partition(|(target, _)| sender.plan.pulls(&target.name));
    let pulled = async {
        if !pulling.is_empty() {
            super::pull::deliver_group(sender, &pulling, &sender.pull_checked).await;
        }
    };
    let sent = async {
        if !called.is_empty() {
            call_group(sender, &called).await;
        }
    };
    tokio::join!(pulled, sent);
}

/// Signs the deploys of `group` now, sends them all and follows them to
/// their end.
async fn call_group(sender: &Sender<'_>, group: &[(Target, StorePath)]) {
    let plan = sender.plan;
    let results = sender.results;
    let signed = match sign_deploys(plan, sender.flake, group).await {
        Ok(signed) => signed,
        Err(error) => {
            let why = format!("cannot sign: {error:#}");
            for (target, _) in group {
                results.add_unsent(&target.name, outcome::Result::Refused(why.clone()));
            }
            return;
        }
    };
    let deploys = signed
        .iter()
        .map(|(target, request)| (target.name.clone(), request.deploy_id.clone()))
        .collect();
    // A `busy` host is sent the very same envelope again: never past its
    // lifetime.
    let lifetime = plan.inventory.defaults.message_lifetime_s().unwrap_or(0);
    let busy_wait = plan.settings.busy_wait.min(Duration::from_secs(lifetime));
    let session = Arc::new(Session {
        client: sender.client.clone(),
        confirmer: Arc::new(Confirmer::new(plan.key.clone(), deploys)),
        progress: sender.progress.clone(),
        no_wait: plan.settings.no_wait,
        busy_wait,
        confirm: plan.settings.confirm_s.is_some(),
        observer: sender.observer.clone(),
    });
    let tasks: Vec<_> = signed
        .into_iter()
        .map(|(target, request)| {
            let session = session.clone();
            let host = target.name.to_string();
            (host, tokio::spawn(deploy_host(session, target, request)))
        })
        .collect();
    for (host, task) in tasks {
        match task.await {
            Ok(result) => results.add(HostResult {
                rev: Some(plan.rev.clone()),
                ..result
            }),
            Err(error) => results.add(HostResult {
                host,
                rev: Some(plan.rev.clone()),
                result: outcome::Result::Refused(format!(
                    "push's task for this host failed: {error}"
                )),
                elapsed: Default::default(),
                batch: None,
            }),
        }
    }
}

/// Signs the deploy of each host of `group`, valid from now: with the
/// agent, one signature for all of them.
async fn sign_deploys(
    plan: &Rollout,
    flake: &str,
    group: &[(Target, StorePath)],
) -> Result<Vec<(Target, StartRequest)>> {
    let settings = &plan.settings;
    let details = DeployDetails {
        action: settings.action,
        flake: Some(flake),
        rev: Some(&plan.rev),
        allow_downgrade: settings.allow_downgrade,
        confirm_within_s: settings.confirm_s,
        specialisation: settings.specialisation.as_deref(),
        lifetime_s: plan.inventory.defaults.message_lifetime_s()?,
        retry_failed: settings.retry_failed,
    };
    let now = sign::now();
    let messages = group
        .iter()
        .map(|(target, system)| sign::deploy_message(&target.name, system, &details, now))
        .collect::<Result<Vec<Message>>>()?;
    let ids: Vec<_> = messages
        .iter()
        .filter_map(|message| sign::deploy_id(message).cloned())
        .collect();
    let envelopes = sign::sign_messages_off_runtime(messages, plan.key.clone()).await?;
    Ok(group
        .iter()
        .map(|(target, _)| target.clone())
        .zip(ids.into_iter().zip(envelopes))
        .map(|(target, (deploy_id, envelope))| {
            let request = StartRequest {
                path: "/v1/deploy",
                envelope,
                deploy_id,
            };
            (target, request)
        })
        .collect())
}

/// Sends one host its signed deploy and follows it.
async fn deploy_host(session: Arc<Session>, target: Target, request: StartRequest) -> HostResult {
    let started = Instant::now();
    let host = target.name.as_str();
    let result = session.send_and_follow(&target, request).await;
    session.progress.phase(host, outcome::phase(&result));
    HostResult {
        host: host.to_owned(),
        rev: None,
        result,
        elapsed: started.elapsed(),
        batch: None,
    }
}
