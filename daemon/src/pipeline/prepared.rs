//! Prepared closures (`prepare` deploys, docs/src/how-to/plan-before-apply.md):
//! a system fetched ahead of its switch and kept alive by a GC root of its
//! own, `gc-roots/prepared-<hash>-<name>` in the state directory. The link
//! itself is the whole state (its target is the system, its modification
//! time when it was prepared), so nothing else has to survive a crash.
//!
//! A prepared closure is released (its root removed, the closure then
//! collectable unless something else holds it) when a deploy of another
//! system starts (any action but `dry-activate`, which changes nothing;
//! a `prepare` of another system too: one prepared closure at a time), and
//! once it is older than `prepare_keep_s`: checked as each deploy starts and
//! every [`RELEASE_CHECK`] while the host is idle.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deployd_command as command;
use deployd_protocol::{Action, DeployId, StorePath};
use tokio_util::sync::CancellationToken;

use super::nix;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::state::StoredDeploy;

/// The prefix of a prepared closure's GC root.
pub const ROOT_PREFIX: &str = "prepared-";
/// How often an idle host looks for prepared closures kept too long.
pub const RELEASE_CHECK: Duration = Duration::from_secs(60);

/// The name of `system`'s prepared root in the GC roots directory.
pub fn root_name(system: &StorePath) -> String {
    let base = system
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or(system.as_str());
    format!("{ROOT_PREFIX}{base}")
}

/// A prepared closure's root, as found in the GC roots directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRoot {
    /// The link.
    pub link: PathBuf,
    /// What it points at (`None`: not a readable link).
    pub system: Option<String>,
    /// When it was made (Unix seconds).
    pub made_at_s: u64,
}

/// Why a prepared closure is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A deploy of another system started.
    AnotherSystem,
    /// It was kept `prepare_keep_s`.
    Expired,
}

impl Release {
    /// As the log says it.
    fn describe(self) -> &'static str {
        match self {
            Release::AnotherSystem => "another system is being deployed",
            Release::Expired => "it was kept prepare_keep_s",
        }
    }
}

/// The roots to release at `now_s`, and why: those older than `keep_s`,
/// and, when a deploy of `deploying` starts, those of any other system.
pub fn to_release<'a>(
    roots: &'a [PreparedRoot],
    deploying: Option<&str>,
    now_s: u64,
    keep_s: u64,
) -> Vec<(&'a PreparedRoot, Release)> {
    roots
        .iter()
        .filter_map(|root| {
            if now_s.saturating_sub(root.made_at_s) >= keep_s {
                Some((root, Release::Expired))
            } else if deploying.is_some_and(|system| root.system.as_deref() != Some(system)) {
                Some((root, Release::AnotherSystem))
            } else {
                None
            }
        })
        .collect()
}

/// Every prepared root in `dir` (none when it does not exist).
fn find_roots(dir: &Path) -> Vec<PreparedRoot> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(ROOT_PREFIX))
        .map(|entry| {
            let link = entry.path();
            let made_at_s = std::fs::symlink_metadata(&link)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            let system = std::fs::read_link(&link)
                .ok()
                .map(|target| target.to_string_lossy().into_owned());
            PreparedRoot {
                link,
                system,
                made_at_s,
            }
        })
        .collect()
}

/// Releases the prepared closures [`to_release`] names: `deploying` is the
/// system of a deploy that starts (`None` for the idle check). Returns one
/// line per closure released, or per root that could not be removed.
pub fn release(config: &Config, deploying: Option<&StorePath>) -> Vec<String> {
    let dir = config.file.state_dir.join("gc-roots");
    let roots = find_roots(&dir);
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let deploying = deploying.map(StorePath::as_str);
    to_release(&roots, deploying, now_s, config.file.prepare_keep_s)
        .into_iter()
        .map(|(root, why)| {
            let system = root.system.as_deref().unwrap_or("an unreadable link");
            match std::fs::remove_file(&root.link) {
                Ok(()) => format!(
                    "deployd: released the prepared closure of {system} ({})",
                    why.describe()
                ),
                Err(error) => format!(
                    "deployd: could not release the prepared closure of {system}: removing {}: {error}",
                    root.link.display()
                ),
            }
        })
        .collect()
}

/// As deploy `id` starts: releases the prepared closures of other systems
/// than its own (unless it is a `dry-activate`) and those kept too long,
/// saying so in its log.
pub(super) fn release_for(daemon: &Daemon, id: &DeployId, deploy: &StoredDeploy) {
    let deploying =
        (deploy.record.action != Action::DryActivate).then_some(&deploy.record.store_path);
    for line in release(&daemon.config(), deploying) {
        daemon.log(id, &line);
    }
}

/// The GC root a deploy's fetch keeps its system alive with: a prepared
/// closure's own (see [`root_name`]), else the one every deploy shares
/// until the profile holds its system.
pub(super) fn fetch_root_name(deploy: &StoredDeploy) -> String {
    match deploy.record.action {
        Action::Prepare => root_name(&deploy.record.store_path),
        _ => "fetched".to_owned(),
    }
}

/// Whether `system` is valid in the store already (a prepared closure, or
/// one that was active before), then kept alive by a root at `gc_root`:
/// such a deploy has no `fetching` phase. A valid path's closure is valid
/// too (Nix's invariant), and a fetch of it would not ask a cache anything.
pub(super) async fn in_store(
    daemon: &Daemon,
    id: &DeployId,
    system: &StorePath,
    gc_root: &Path,
) -> bool {
    // Nothing there: not valid, and no command needed to say so.
    if !super::fetch::is_present(system) {
        return false;
    }
    let config = daemon.config();
    if command::run(&nix::check_validity(&config, system), |_| {})
        .await
        .is_err()
    {
        return false;
    }
    command::run(
        &nix::add_gc_root(&config, system.as_str(), gc_root),
        |line| daemon.log(id, line),
    )
    .await
    .is_ok()
}

/// Every [`RELEASE_CHECK`] (and at once), while no deploy runs, releases
/// the prepared closures kept longer than `prepare_keep_s` (read from the
/// config in force each time, so a reload counts). A running deploy does
/// the same as it starts, so skipping while it runs misses nothing.
pub async fn release_on_a_timer(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(RELEASE_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if daemon.unfinished().is_some() {
            continue;
        }
        for line in release(&daemon.config(), None) {
            log::info!("{}", line.trim_start_matches("deployd: "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(system: &str, made_at_s: u64) -> PreparedRoot {
        PreparedRoot {
            link: PathBuf::from(format!("/state/gc-roots/prepared-{system}")),
            system: Some(format!("/nix/store/{system}")),
            made_at_s,
        }
    }

    #[test]
    fn the_root_is_named_after_the_system() {
        let system: StorePath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-a"
            .parse()
            .expect("store path");
        assert_eq!(
            root_name(&system),
            "prepared-0123456789abcdfghijklmnpqrsvwxyz-nixos-system-a"
        );
    }

    #[test]
    fn a_deploy_of_another_system_releases_it_and_one_of_the_same_keeps_it() {
        let roots = [root("a", 1000), root("b", 1000)];
        let released = to_release(&roots, Some("/nix/store/a"), 1010, 86400);
        assert_eq!(released, vec![(&roots[1], Release::AnotherSystem)]);
        // The idle check releases nothing young.
        assert!(to_release(&roots, None, 1010, 86400).is_empty());
    }

    #[test]
    fn it_is_released_once_kept_prepare_keep_s() {
        let roots = [root("a", 1000)];
        assert!(to_release(&roots, None, 1000 + 599, 600).is_empty());
        assert_eq!(
            to_release(&roots, None, 1000 + 600, 600),
            vec![(&roots[0], Release::Expired)]
        );
        // Even while its own system is deployed: that deploy keeps its own root.
        assert_eq!(
            to_release(&roots, Some("/nix/store/a"), 1000 + 600, 600),
            vec![(&roots[0], Release::Expired)]
        );
    }

    #[test]
    fn a_link_that_cannot_be_read_is_released_by_any_deploy() {
        let broken = [PreparedRoot {
            system: None,
            ..root("a", 1000)
        }];
        assert_eq!(
            to_release(&broken, Some("/nix/store/a"), 1001, 600),
            vec![(&broken[0], Release::AnotherSystem)]
        );
    }

    #[test]
    fn roots_are_found_by_their_prefix_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/nix/store/a", dir.path().join("prepared-a")).expect("link");
        std::os::unix::fs::symlink("/nix/store/f", dir.path().join("fetched")).expect("link");
        let found = find_roots(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].system.as_deref(), Some("/nix/store/a"));
        assert!(found[0].made_at_s > 0);
        assert!(find_roots(&dir.path().join("absent")).is_empty());
    }
}
