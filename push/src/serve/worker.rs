//! The one rollout at a time: take the oldest waiting push, fetch its
//! branch, report the commits it supersedes, and deploy the fetched tip to
//! the branch's hosts through the same rollout as `push --all REV`,
//! reporting each host on the commit as it goes. A tip already deployed is
//! not deployed again (a replayed or repeated hook does nothing).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use deployd_command::redact::mask_credentials;
use deployd_protocol::{Revision, SecretKey};

use crate::keys::DeployKey;

use super::build_settings::BuildSection;
use super::channel::publish::ServiceChannel;
use super::config::Follow;
use super::queue::{HostOutcome, QueuedPush, RolloutRecord};
use super::repository::Clone;
use super::statuses::{short, CommitStatus, StatusState};
use super::{now_ms, Service};

/// How long a host that is `busy` with another deploy (one a restart of
/// this service left running, say) is asked again: inside the signed
/// message's five-minute window.
const BUSY_WAIT: Duration = Duration::from_secs(240);
use crate::inventory::{Inventory, Target};
use crate::outcome::{self, HostResult};
use crate::progress::Progress;
use crate::rollout::{rollout, BuildSource, Rollout, RolloutObserver, RolloutSettings};

/// Tries at fetching before a push is given up.
const FETCH_ATTEMPTS: u32 = 3;

/// Runs rollouts until shutdown; a rollout cut short by shutdown stays in
/// the queue and runs again at the next start.
pub async fn run(service: Arc<Service>) {
    let shutdown = service.shutdown.clone();
    loop {
        let woken = service.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = {
            let service = service.clone();
            tokio::task::spawn_blocking(move || service.queue().start_next()).await
        };
        let (push, id) = match next {
            Ok(Ok(Some(next))) => next,
            Ok(Ok(None)) => {
                tokio::select! {
                    () = &mut woken => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            Ok(Err(error)) => {
                log::error!("cannot take the next push: {error:#}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            Err(error) => {
                log::error!("the queue's task failed: {error}");
                continue;
            }
        };
        service.pages.journal.begin(id, &push.branch, now_ms());
        let record = tokio::select! {
            record = deploy_push(&service, &push, id) => record,
            () = shutdown.cancelled() => return,
        };
        service.count_rollout(&record);
        let finished = {
            let service = service.clone();
            tokio::task::spawn_blocking(move || {
                let mut queue = service.queue();
                queue.finish(record)?;
                let kept: Vec<u64> = queue.state().history.iter().map(|kept| kept.id).collect();
                drop(queue);
                if let Err(error) = service.pages.journal.finish(&kept) {
                    log::warn!("the rollout's page keeps only its record: {error:#}");
                }
                Ok::<_, anyhow::Error>(())
            })
            .await
        };
        match finished {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                log::error!("cannot record the rollout of {}: {error:#}", push.branch)
            }
            Err(error) => log::error!("cannot record the rollout of {}: {error}", push.branch),
        }
    }
}

/// One push, start to end.
async fn deploy_push(service: &Arc<Service>, push: &QueuedPush, id: u64) -> RolloutRecord {
    let started_at_ms = now_ms();
    let mut record = RolloutRecord {
        id,
        branch: push.branch.clone(),
        rev: None,
        outcome: "error".into(),
        message: None,
        started_at_ms,
        finished_at_ms: started_at_ms,
        hosts: Vec::new(),
    };
    log::info!(branch = push.branch.as_str(); "rollout of {} (hook {}, delivery {})", push.branch, short(&push.after), push.delivery);
    match prepare(service, push, id).await {
        Err(error) => {
            log::error!("rollout of {}: {error:#}", push.branch);
            record.message = Some(crate::inventory::one_line(&format!("{error:#}")));
        }
        Ok(Prepared::Unchanged { rev, why }) => {
            log::info!("rollout of {}: {why}", push.branch);
            record.rev = rev;
            record.outcome = "unchanged".into();
            record.message = Some(why);
        }
        Ok(Prepared::Ready(plan)) => {
            record.rev = Some(plan.rev.to_string());
            let (hosts, any_sent) = deploy(service, plan, id).await;
            let all_succeeded = hosts.iter().all(|host| host.result == "succeeded");
            // A host that pulls and has not reported yet is neither.
            let only_waiting = hosts
                .iter()
                .all(|host| matches!(host.result.as_str(), "succeeded" | "published"));
            // Deployed (and not deployed again for a repeated hook) once at
            // least one host took it (or it was published for one that
            // pulls); otherwise a redelivery tries again.
            record.outcome = match (all_succeeded, any_sent) {
                (true, _) => "succeeded",
                (false, true) if only_waiting => "published",
                (false, true) => "failed",
                (false, false) => {
                    record.message = Some("no host took the deploy".into());
                    "error"
                }
            }
            .into();
            record.hosts = hosts;
        }
    }
    record.finished_at_ms = now_ms();
    // Its status is open to readers: no credentials in what it says (a
    // build's output, a host's error), whoever wrote them.
    record.message = record
        .message
        .map(|message| mask_credentials(&message).into_owned());
    record
}

/// What a push leads to, once its branch is fetched.
enum Prepared {
    /// Nothing to deploy, and why.
    Unchanged { rev: Option<String>, why: String },
    /// A rollout to run.
    Ready(Box<Rollout>),
}

/// Fetches the branch, reports what the push supersedes, and plans the rollout.
async fn prepare(service: &Arc<Service>, push: &QueuedPush, id: u64) -> Result<Prepared> {
    let config = &service.config;
    let follow = config
        .following(&push.branch)
        .context("the branch is no longer followed")?
        .clone();
    let clone_dir = config.clone_dir();
    let (tip, inventory, targets, superseded, earlier, key) = {
        let service = service.clone();
        let push = push.clone();
        let follow = follow.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let clone = Clone::open(&clone_dir)?;
            let tip = fetch_with_retries(&clone, &service, &push.branch)?;
            let Some(tip) = tip else {
                return Ok((None, None, Vec::new(), Vec::new(), None, None));
            };
            clone.check_out(tip)?;
            let inventory = Inventory::load_from_repository(clone.work_tree())?;
            service.channel.set_fleet(&inventory);
            service
                .pages
                .set_fleet(&inventory, service.ca_file.as_ref());
            warn_ignored(&inventory, tip);
            let targets = select(&inventory, &follow)?
                .into_iter()
                .map(|target| target.also_trusting(service.ca_file.as_ref()))
                .collect();
            // Only commits the fetched branch holds are reported on (a hook's
            // payload is a hint, not proof), and none an earlier rollout
            // deployed or already reported.
            let mut hinted = push.superseded.clone();
            hinted.push(push.after.clone());
            let tip_text = tip.to_string();
            let deployed = service.queue().state().deployed.get(&push.branch).cloned();
            let earlier = deployed
                .as_deref()
                .and_then(|rev| git2::Oid::from_str(rev).ok());
            let superseded: Vec<String> = hinted
                .into_iter()
                .filter(|sha| *sha != tip_text && clone.is_ancestor(sha, tip))
                .filter(|sha| !earlier.is_some_and(|earlier| clone.is_ancestor(sha, earlier)))
                .collect();
            let key_file = &service.config.key_file;
            let key = SecretKey::load(key_file)
                .with_context(|| format!("cannot use the deploy key {}", key_file.display()))?;
            Ok((
                Some(tip),
                Some(inventory),
                targets,
                superseded,
                deployed,
                Some(key),
            ))
        })
        .await??
    };
    let (Some(tip), Some(inventory), Some(key)) = (tip, inventory, key) else {
        return Ok(Prepared::Unchanged {
            rev: None,
            why: format!("the branch {} is gone", push.branch),
        });
    };
    let rev: Revision = tip.to_string().parse()?;
    let key = Arc::new(key);
    for sha in &superseded {
        for target in &targets {
            service.statuses.post(CommitStatus {
                sha: sha.clone(),
                host: target.name.to_string(),
                state: StatusState::Superseded,
                description: format!("superseded by {}", short(rev.as_str())),
                target_url: rollout_page(service, id, target.name.as_str()),
            });
        }
    }
    if earlier.as_deref() == Some(rev.as_str()) {
        return Ok(Prepared::Unchanged {
            rev: Some(rev.to_string()),
            why: format!("{} is already deployed", short(rev.as_str())),
        });
    }
    Ok(Prepared::Ready(Box::new(Rollout {
        flake_dir: config.clone_dir(),
        inventory,
        targets,
        rev,
        settings: RolloutSettings {
            action: follow.action,
            confirm_s: follow.confirm_s,
            allow_downgrade: false,
            // A redelivered hook of a system that failed must be refused
            // (`quarantined`), never retried.
            retry_failed: false,
            specialisation: None,
            parallel: None,
            policy: follow.policy()?,
            no_wait: false,
            // A commit chooses nothing the build machine holds.
            build: BuildSource::Service(config.build_machine()),
            busy_wait: BUSY_WAIT,
        },
        key: DeployKey::File(key.clone()),
        channel: Some(Arc::new(ServiceChannel {
            service: service.clone(),
            key,
        })),
    })))
}

/// Says which of push.toml's build settings the service ignores: it builds,
/// copies and signs by its own `[build]`, whatever a commit says.
fn warn_ignored(inventory: &Inventory, tip: git2::Oid) {
    let ignored = BuildSection::ignored_in(&inventory.defaults);
    if !ignored.is_empty() {
        let rev = tip.to_string();
        log::warn!(
            rev = rev.as_str();
            "push.toml at {} sets {}: ignored; push serve builds, copies and signs by its own [build] and its own key",
            short(&rev),
            ignored.join(", ")
        );
    }
}

fn fetch_with_retries(clone: &Clone, service: &Service, branch: &str) -> Result<Option<git2::Oid>> {
    let config = &service.config;
    let mut attempt = 1;
    loop {
        match clone.fetch_branch(&config.repository, branch, &config.git) {
            Ok(tip) => return Ok(tip),
            Err(error) if attempt < FETCH_ATTEMPTS => {
                log::warn!("fetching {branch} failed ({error:#}); trying again");
                std::thread::sleep(Duration::from_secs(2u64.pow(attempt)));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The follow's hosts, named as `push --on` names them (names, globs,
/// `@tags`): `"*"` is every host of push.toml.
fn select(inventory: &Inventory, follow: &Follow) -> Result<Vec<Target>> {
    if follow.hosts.iter().any(|host| host == "*") {
        return inventory.all();
    }
    inventory.select(&crate::selection::Selection {
        on: follow.selectors()?,
        ..Default::default()
    })
}

/// Runs the rollout, reporting every host on the commit; whether any host
/// took its deploy (or had it published).
async fn deploy(service: &Arc<Service>, plan: Box<Rollout>, id: u64) -> (Vec<HostOutcome>, bool) {
    let sha = plan.rev.to_string();
    let urls: BTreeMap<String, String> = plan
        .targets
        .iter()
        .map(|target| (target.name.to_string(), target.url.clone()))
        .collect();
    let names: Vec<String> = urls.keys().cloned().collect();
    service.set_running(Some((plan.rev.clone(), names.clone())));
    service.pages.journal.building(&sha, &names, now_ms());
    for host in &names {
        service.statuses.post(CommitStatus {
            sha: sha.clone(),
            host: host.clone(),
            state: StatusState::Building,
            description: "building".into(),
            target_url: rollout_page(service, id, host),
        });
    }
    let observer = Arc::new(ForgeObserver {
        service: service.clone(),
        id,
        sha: sha.clone(),
        urls,
        deploy_urls: Mutex::default(),
        taken: Mutex::default(),
        ended: Mutex::default(),
    });
    let progress = Progress::new(&names).telling(observer.clone());
    let results = rollout(*plan, progress, observer.clone()).await;
    service.set_running(None);
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            // Nothing was sent: every host is told why.
            let why = crate::inventory::one_line(&format!("{error:#}"));
            names
                .iter()
                .map(|host| {
                    let result = HostResult {
                        host: host.clone(),
                        rev: None,
                        result: outcome::Result::Refused(why.clone()),
                        elapsed: Duration::ZERO,
                        batch: None,
                    };
                    observer.ended(&result);
                    result
                })
                .collect()
        }
    };
    let outcomes = results
        .iter()
        .map(|result| {
            let (state, description) = describe(result);
            HostOutcome {
                host: result.host.clone(),
                result: outcome::phase(&result.result).to_owned(),
                message: (state != StatusState::Success).then_some(description),
                target_url: observer.deploy_url(&result.host),
            }
        })
        .collect();
    let any_taken = !observer
        .taken
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_empty();
    (outcomes, any_taken)
}

/// The rollout's page, at `host`'s part, as people reach it (none without
/// `public_url`).
fn rollout_page(service: &Service, id: u64, host: &str) -> Option<String> {
    service
        .config
        .page_url(&format!("/rollouts/{id}#host-{host}"))
}

/// Reports each host's progress on the commit and on the rollout's page.
struct ForgeObserver {
    service: Arc<Service>,
    /// The rollout's number.
    id: u64,
    sha: String,
    /// Each host's deployd.
    urls: BTreeMap<String, String>,
    /// Each host's deploy record, once it accepted its deploy.
    deploy_urls: Mutex<BTreeMap<String, String>>,
    /// The hosts that accepted their deploy, or had it published.
    taken: Mutex<std::collections::BTreeSet<String>>,
    /// The hosts whose final status was posted.
    ended: Mutex<std::collections::BTreeSet<String>>,
}

impl ForgeObserver {
    fn deploy_url(&self, host: &str) -> Option<String> {
        self.deploy_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(host)
            .cloned()
    }
}

impl ForgeObserver {
    fn took(&self, host: &str) {
        self.taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(host.to_owned());
    }
}

impl RolloutObserver for ForgeObserver {
    fn published(&self, host: &str, _deploy_id: &str, sequence: u64) {
        self.took(host);
        self.service.statuses.post(CommitStatus {
            sha: self.sha.clone(),
            host: host.to_owned(),
            state: StatusState::Published,
            description: format!("published (desired state {sequence})"),
            target_url: rollout_page(&self.service, self.id, host),
        });
    }

    fn deploying(&self, host: &str, deploy_id: &str) {
        self.took(host);
        self.service.pages.journal.deploying(host, deploy_id);
        // The host's own record, for push serve's status API.
        if let Some(url) = self
            .urls
            .get(host)
            .map(|base| format!("{base}/v1/deploys/{deploy_id}"))
        {
            self.deploy_urls
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(host.to_owned(), url);
        }
        self.service.statuses.post(CommitStatus {
            sha: self.sha.clone(),
            host: host.to_owned(),
            state: StatusState::Deploying,
            description: "deploying".into(),
            target_url: rollout_page(&self.service, self.id, host),
        });
    }

    fn planned(&self, batches: &[crate::batches::Batch]) {
        let batches = batches
            .iter()
            .map(|batch| {
                let hosts = batch.hosts.iter().map(|host| host.to_string()).collect();
                (batch.name.to_string(), hosts)
            })
            .collect();
        self.service.pages.journal.batches(batches);
    }

    fn phase(&self, host: &str, phase: &str) {
        self.service.pages.journal.phase(host, phase, now_ms());
    }

    fn line(&self, host: &str, line: &str) {
        self.service.pages.journal.line(host, line);
    }

    fn ended(&self, result: &HostResult) {
        let first = self
            .ended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(result.host.clone());
        if !first {
            return;
        }
        let (state, description) = describe(result);
        self.service.pages.journal.ended(
            &result.host,
            outcome::phase(&result.result),
            (state != StatusState::Success).then(|| description.clone()),
            now_ms(),
        );
        self.service.statuses.post(CommitStatus {
            sha: self.sha.clone(),
            host: result.host.clone(),
            state,
            description,
            target_url: rollout_page(&self.service, self.id, &result.host),
        });
    }
}

/// A host's result as a commit status (and push serve's status) says it,
/// without credentials (a host running an earlier deployd may still send
/// them).
pub(super) fn describe(result: &HostResult) -> (StatusState, String) {
    let (state, description) = describe_unmasked(result);
    (state, mask_credentials(&description).into_owned())
}

fn describe_unmasked(result: &HostResult) -> (StatusState, String) {
    use deployd_protocol::api::DeployState;
    match &result.result {
        outcome::Result::Ended(record) => match (record.state, &record.error) {
            (DeployState::Succeeded, _) => (StatusState::Success, "deployed".into()),
            (DeployState::RolledBack, Some(error)) => (
                StatusState::Failure,
                format!("rolled back: {}: {}", error.code, error.message),
            ),
            (state, Some(error)) => (
                StatusState::Failure,
                format!("{state}: {}: {}", error.code, error.message),
            ),
            (state, None) => (StatusState::Failure, state.to_string()),
        },
        outcome::Result::Sent(_) => (StatusState::Success, "sent".into()),
        // Still pending: the host's report sets it when it comes.
        outcome::Result::Published(_) => (
            StatusState::Published,
            "published; waiting for its report".into(),
        ),
        outcome::Result::Refused(why) => (StatusState::Error, format!("refused: {why}")),
        outcome::Result::Unreachable(why) => (StatusState::Error, format!("unreachable: {why}")),
        outcome::Result::BuildFailed(why) => (StatusState::Error, format!("build failed: {why}")),
        // "after canary sambirano failed": "not started: canary sambirano failed".
        outcome::Result::NotStarted(why) => (
            StatusState::Error,
            format!("not started: {}", why.strip_prefix("after ").unwrap_or(why)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_status_shows_no_credentials() {
        let result = HostResult {
            host: "sambirano".into(),
            rev: None,
            result: outcome::Result::BuildFailed(
                "building: warning: unable to download 'http://alice:s3cret@cache/x'".into(),
            ),
            elapsed: Duration::ZERO,
            batch: None,
        };
        assert_eq!(
            describe(&result),
            (
                StatusState::Error,
                "build failed: building: warning: unable to download 'http://alice:***@cache/x'"
                    .to_owned()
            )
        );
    }
}
