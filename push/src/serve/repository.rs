//! The service's own clone of the fleet's repository (`state_dir/repository`),
//! fetched with git2 from the URL in its config, never from a hook: over
//! `file://`, `http(s)://` (a user name and a password or token from a file,
//! https only) or `ssh://` (a key from a file), the credentials going only
//! to that URL's scheme, host and port (`credentials`). A branch's tip is
//! what the fetch found; it is checked out (detached, forced) so that
//! push.toml and the flake are read from exactly that commit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{FetchOptions, Oid, RemoteRedirect, Repository};

use super::config::GitCredentials;
use super::credentials::callbacks;

/// How long one fetch may transfer before it is given up.
pub const FETCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The clone.
pub struct Clone {
    repository: Repository,
    work_tree: PathBuf,
}

impl Clone {
    /// Opens `dir`, creating an empty repository there the first time.
    pub fn open(dir: &Path) -> Result<Clone> {
        let repository = match Repository::open(dir) {
            Ok(repository) => repository,
            Err(_) => Repository::init(dir)
                .with_context(|| format!("cannot create a repository in {}", dir.display()))?,
        };
        // A symbolic link in the repository is checked out as a plain file
        // holding its target: a commit cannot make push.toml (or anything
        // else read from the work tree) point at the service's secrets.
        repository
            .config()
            .and_then(|mut config| config.set_bool("core.symlinks", false))
            .context("cannot configure the clone")?;
        Ok(Clone {
            repository,
            work_tree: dir.to_owned(),
        })
    }

    /// The work tree (the flake's directory once a commit is checked out).
    pub fn work_tree(&self) -> &Path {
        &self.work_tree
    }

    /// Fetches `branch` from `url` and returns its tip, or `None` when the
    /// branch is not there (deleted since the hook).
    pub fn fetch_branch(
        &self,
        url: &str,
        branch: &str,
        credentials: &GitCredentials,
    ) -> Result<Option<Oid>> {
        let mut remote = self
            .repository
            .remote_anonymous(url)
            .with_context(|| format!("cannot use the repository URL {url}"))?;
        let tracking = format!("refs/remotes/origin/{branch}");
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        let mut options = FetchOptions::new();
        // Credentials go only to the configured scheme, host and port: no
        // redirect to another host is followed (libgit2 still follows one to
        // the same host's other port, which then gets none; see credentials).
        options.follow_redirects(RemoteRedirect::None);
        let mut callbacks = callbacks(credentials, url);
        // A forge that stalls mid-transfer is given up at the deadline.
        let deadline = std::time::Instant::now() + FETCH_DEADLINE;
        callbacks.transfer_progress(move |_| std::time::Instant::now() < deadline);
        options.remote_callbacks(callbacks);
        options.download_tags(git2::AutotagOption::None);
        // A branch that is gone makes the fetch of its refspec find nothing.
        let _ = self
            .repository
            .find_reference(&tracking)
            .map(|mut r| r.delete());
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .with_context(|| format!("fetching {branch} from {url} failed"))?;
        Ok(self
            .repository
            .find_reference(&tracking)
            .ok()
            .and_then(|reference| reference.target()))
    }

    /// Checks `commit` out, forced and detached.
    pub fn check_out(&self, commit: Oid) -> Result<()> {
        let object = self.repository.find_object(commit, None)?;
        let mut options = git2::build::CheckoutBuilder::new();
        options.force().remove_untracked(true);
        self.repository
            .checkout_tree(&object, Some(&mut options))
            .with_context(|| format!("cannot check out {commit}"))?;
        self.repository.set_head_detached(commit)?;
        Ok(())
    }

    /// Whether `commit` (a hook's hint) is `tip` or one of its ancestors.
    pub fn is_ancestor(&self, commit: &str, tip: Oid) -> bool {
        let Ok(commit) = Oid::from_str(commit) else {
            return false;
        };
        if self.repository.find_commit(commit).is_err() {
            return false;
        }
        commit == tip
            || self
                .repository
                .graph_descendant_of(tip, commit)
                .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_git::git;

    #[test]
    fn fetches_a_branch_tip_and_checks_it_out() {
        let upstream = tempfile::tempdir().expect("dir");
        git(upstream.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(upstream.path().join("push.toml"), "one\n").expect("write");
        git(upstream.path(), &["add", "."]);
        git(upstream.path(), &["commit", "-q", "-m", "one"]);
        let first = git(upstream.path(), &["rev-parse", "HEAD"]);
        std::fs::write(upstream.path().join("push.toml"), "two\n").expect("write");
        git(upstream.path(), &["commit", "-q", "-am", "two"]);
        let second = git(upstream.path(), &["rev-parse", "HEAD"]);

        let state = tempfile::tempdir().expect("dir");
        let clone = Clone::open(&state.path().join("repository")).expect("open");
        let url = format!("file://{}", upstream.path().display());
        let none = GitCredentials::default();
        let tip = clone
            .fetch_branch(&url, "main", &none)
            .expect("fetch")
            .expect("tip");
        assert_eq!(tip.to_string(), second);
        clone.check_out(tip).expect("checkout");
        let text = std::fs::read_to_string(clone.work_tree().join("push.toml")).expect("read");
        assert_eq!(text, "two\n");
        assert!(clone.is_ancestor(&first, tip));
        assert!(!clone.is_ancestor(&"e".repeat(40), tip));
        assert_eq!(clone.fetch_branch(&url, "gone", &none).ok().flatten(), None);

        // A symbolic link is checked out as a file holding its target.
        std::fs::remove_file(upstream.path().join("push.toml")).expect("rm");
        std::os::unix::fs::symlink("/etc/hostname", upstream.path().join("push.toml"))
            .expect("link");
        git(upstream.path(), &["commit", "-q", "-am", "a link"]);
        let tip = clone
            .fetch_branch(&url, "main", &none)
            .expect("fetch")
            .expect("tip");
        clone.check_out(tip).expect("checkout");
        let checked_out = clone.work_tree().join("push.toml");
        assert!(checked_out
            .symlink_metadata()
            .expect("meta")
            .file_type()
            .is_file());
        assert_eq!(
            std::fs::read_to_string(&checked_out).expect("read"),
            "/etc/hostname"
        );

        // A branch deleted upstream is gone from the next fetch.
        git(upstream.path(), &["branch", "dev"]);
        assert!(clone
            .fetch_branch(&url, "dev", &none)
            .expect("dev")
            .is_some());
        git(upstream.path(), &["branch", "-D", "dev"]);
        assert_eq!(clone.fetch_branch(&url, "dev", &none).ok().flatten(), None);
    }
}
