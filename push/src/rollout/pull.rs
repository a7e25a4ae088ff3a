//! The hosts of a rollout that pull (`pull = true` in push.toml): nobody
//! opens a connection to them. When the rollout has a [`PullChannel`]
//! (push serve's own channel), each one's deploy is published there as its
//! next desired state, in its batch like any host, and the channel waits
//! (bounded) for the host's final report, so that a canary or a batch that
//! pulls still gates the next. Without a channel (`push` on the command
//! line) such a host is refused with a word on how it is deployed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use deployd_protocol::{DeployRequest, HostName, Request, Revision, StorePath};
use futures_util::future::BoxFuture;

use super::send::Sender;
use super::{Rollout, RolloutObserver};
use crate::inventory::Target;
use crate::outcome::{self, HostResult};
use crate::sign::{self, DeployDetails};

/// What a channel holds for a host, as the downgrade check saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRevision {
    /// The held state's sequence.
    pub sequence: u64,
    /// The revision it was built from, if it says.
    pub rev: Option<Revision>,
}

/// Where a rollout delivers its pull hosts' deploys.
pub trait PullChannel: Send + Sync {
    /// What the channel holds for `host`, for the downgrade check.
    fn held(&self, host: &HostName) -> Option<HeldRevision>;

    /// Publishes `deploy` as `host`'s next desired state (telling
    /// `observer` once it is published) and waits, bounded, for the host's
    /// report of it: the deploy's record once the host reports it ended,
    /// else [`outcome::Result::Published`]. `checked` is the sequence held
    /// when the downgrade check passed (`None`: nothing was held); if the
    /// channel holds another one by the time it publishes (a `push publish`
    /// meanwhile), the host is refused rather than that state replaced
    /// unchecked.
    fn deliver(
        &self,
        host: HostName,
        deploy: DeployRequest,
        checked: Option<u64>,
        observer: Arc<dyn RolloutObserver>,
    ) -> BoxFuture<'static, outcome::Result>;
}

impl Rollout {
    /// Whether `host` pulls its desired state.
    pub fn pulls(&self, host: &HostName) -> bool {
        self.inventory
            .hosts
            .get(host)
            .is_some_and(|entry| entry.pull)
    }
}

/// Why a pull host is not deployed by a rollout without a channel.
pub fn without_channel() -> String {
    "it pulls its desired state (pull = true in push.toml): nobody calls it; publish to its channel (push publish), or let push serve follow it".to_owned()
}

/// Whether `rev` may replace what the channel holds for `host`: the
/// sequence held when it may (`None`: nothing is held), `Err(why)` when it
/// does not descend from the held revision (and no downgrade is allowed),
/// or when that cannot be checked.
pub fn downgrade(
    plan: &Rollout,
    channel: &dyn PullChannel,
    host: &HostName,
) -> Result<Option<u64>, String> {
    let Some(held) = channel.held(host) else {
        return Ok(None);
    };
    let checked = Ok(Some(held.sequence));
    let Some(held_rev) = held.rev else {
        return checked;
    };
    if plan.settings.allow_downgrade || held_rev == plan.rev {
        return checked;
    }
    let repository = match crate::revision::FlakeRepository::open(&plan.flake_dir) {
        Ok(repository) => repository,
        Err(error) => {
            return Err(format!(
                "its channel holds {held_rev}, and the repository to check that {} descends from it cannot be opened: {error:#}",
                plan.rev
            ))
        }
    };
    match repository.descends_from(&plan.rev, &held_rev) {
        Some(true) => checked,
        Some(false) => Err(format!(
            "its channel holds {held_rev}, and {} does not descend from it",
            plan.rev
        )),
        None => Err(format!(
            "its channel holds {held_rev}, which this repository does not have, so a downgrade cannot be ruled out"
        )),
    }
}

/// Publishes the deploys of the pull hosts of a group and waits for their
/// reports; each host's result goes to the rollout's results. `checked`
/// is the sequence each host's channel held when its downgrade check passed.
pub(super) async fn deliver_group(
    sender: &Sender<'_>,
    group: &[(Target, StorePath)],
    checked: &BTreeMap<HostName, Option<u64>>,
) {
    let plan = sender.plan;
    let Some(channel) = plan.channel.clone() else {
        for (target, _) in group {
            let result = outcome::Result::Refused(without_channel());
            sender.results.add_unsent(&target.name, result);
        }
        return;
    };
    let details = DeployDetails {
        action: plan.settings.action,
        flake: Some(sender.flake),
        rev: Some(&plan.rev),
        allow_downgrade: plan.settings.allow_downgrade,
        // Nobody reaches a pulling host to confirm.
        confirm_within_s: None,
        specialisation: plan.settings.specialisation.as_deref(),
        // The desired state's own lifetime is the channel's.
        lifetime_s: 1,
        retry_failed: plan.settings.retry_failed,
    };
    let now = sign::now();
    let mut tasks = Vec::new();
    for (target, system) in group {
        let deploy = match sign::deploy_message(&target.name, system, &details, now) {
            Ok(message) => match message.request {
                Request::Deploy(deploy) => deploy,
                _ => unreachable!("a deploy message holds a deploy"),
            },
            Err(error) => {
                let why = format!("cannot make its deploy: {error:#}");
                sender
                    .results
                    .add_unsent(&target.name, outcome::Result::Refused(why));
                continue;
            }
        };
        sender.progress.phase(target.name.as_str(), "publishing");
        let started = Instant::now();
        let seen = checked.get(&target.name).copied().flatten();
        let delivery = channel.deliver(target.name.clone(), deploy, seen, sender.observer.clone());
        tasks.push((target.name.clone(), started, tokio::spawn(delivery)));
    }
    for (host, started, task) in tasks {
        let result = task.await.unwrap_or_else(|error| {
            outcome::Result::Refused(format!("push's task for this host failed: {error}"))
        });
        sender
            .progress
            .phase(host.as_str(), outcome::phase(&result));
        sender.results.add(HostResult {
            host: host.to_string(),
            rev: Some(plan.rev.clone()),
            result,
            elapsed: started.elapsed(),
            batch: None,
        });
    }
}
