//! What the stand-in reads from the repository it serves, through the real
//! `git` (the lab's command runner): its refs (compared around a push over
//! HTTP), its hash length, and the commits a push brought, for the hook's
//! `commits` list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::run::{output_within, run_within, stdout_text};

/// How long one git query may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most commits a hook lists (GitHub's and GitLab's limit is 20; Gitea's
/// default `FEED_MAX_COMMIT_NUM` is 5, which the Gitea body applies itself).
pub(super) const MAX_LISTED_COMMITS: usize = 20;

/// The repository the stand-in serves.
#[derive(Debug, Clone)]
pub(super) struct Repository {
    dir: PathBuf,
}

/// One commit, as the hooks list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommitInfo {
    pub id: String,
    pub tree: String,
    pub message: String,
    pub timestamp: String,
    pub author_name: String,
    pub author_email: String,
    pub committer_name: String,
    pub committer_email: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

impl Repository {
    /// The repository in `dir` (a bare repository or a work tree).
    pub fn open(dir: &Path) -> Result<Repository> {
        let repository = Repository {
            dir: dir.to_owned(),
        };
        repository
            .git(&["rev-parse", "--git-dir"])
            .with_context(|| format!("{} is not a git repository", dir.display()))?;
        Ok(repository)
    }

    /// The directory given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every ref and the object it names.
    pub fn refs(&self) -> Result<BTreeMap<String, String>> {
        let listing = self.git(&["for-each-ref", "--format=%(objectname) %(refname)"])?;
        Ok(listing
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(object, name)| (name.to_owned(), object.to_owned()))
            .collect())
    }

    /// The all-zero object name of this repository's hash (40 or 64 digits).
    pub fn zero_id(&self) -> Result<String> {
        let format = self
            .git(&["rev-parse", "--show-object-format"])
            .unwrap_or_else(|_| "sha1".to_owned());
        Ok("0".repeat(if format == "sha256" { 64 } else { 40 }))
    }

    /// The commit `object` names (peeling an annotated tag), if it exists.
    pub fn commit_of(&self, object: &str) -> Option<String> {
        self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{object}^{{commit}}"),
        ])
        .ok()
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `descendant`.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        let mut command = self.command();
        command.args(["merge-base", "--is-ancestor", ancestor, descendant]);
        output_within(&mut command, GIT_TIMEOUT).is_ok_and(|output| output.status.success())
    }

    /// The default branch's name (what `HEAD` points at) and its tip.
    pub fn default_branch(&self) -> Result<(String, String)> {
        let name = self.git(&["symbolic-ref", "HEAD"])?;
        let tip = self.git(&["rev-parse", "--verify", "HEAD^{commit}"])?;
        Ok((name, tip))
    }

    /// The commits reachable from `after` and not from `before` (all zeros:
    /// only `after`'s own commit), newest first, at most
    /// [`MAX_LISTED_COMMITS`], and how many there are in all.
    pub fn pushed_commits(&self, before: &str, after: &str) -> Result<(Vec<CommitInfo>, usize)> {
        let Some(tip) = self.commit_of(after) else {
            return Ok((Vec::new(), 0));
        };
        let range = match self.commit_of(before) {
            Some(base) if !is_zero(before) => format!("{base}..{tip}"),
            _ => return Ok((vec![self.commit(&tip)?], 1)),
        };
        let ids = self.git(&["rev-list", &range])?;
        let ids: Vec<&str> = ids.lines().collect();
        let listed = ids
            .iter()
            .take(MAX_LISTED_COMMITS)
            .map(|id| self.commit(id))
            .collect::<Result<Vec<_>>>()?;
        Ok((listed, ids.len()))
    }

    /// The last `count` commits of `tip`'s first-parent history, newest first.
    pub fn recent_commits(&self, tip: &str, count: usize) -> Result<Vec<CommitInfo>> {
        let ids = self.git(&[
            "rev-list",
            "--first-parent",
            &format!("--max-count={count}"),
            tip,
        ])?;
        ids.lines().map(|id| self.commit(id)).collect()
    }

    fn commit(&self, id: &str) -> Result<CommitInfo> {
        let fields = self.git(&[
            "show",
            "-s",
            "--format=%H%x00%T%x00%aI%x00%an%x00%ae%x00%cn%x00%ce%x00%B",
            id,
        ])?;
        let mut fields = fields.splitn(8, '\0');
        let mut next = || fields.next().unwrap_or_default().to_owned();
        let mut commit = CommitInfo {
            id: next(),
            tree: next(),
            timestamp: next(),
            author_name: next(),
            author_email: next(),
            committer_name: next(),
            committer_email: next(),
            message: format!("{}\n", next().trim_end()),
            added: Vec::new(),
            removed: Vec::new(),
            modified: Vec::new(),
        };
        let changes = self.git(&[
            "diff-tree",
            "-r",
            "--no-commit-id",
            "--name-status",
            "--root",
            "-m",
            "--first-parent",
            id,
        ])?;
        for line in changes.lines() {
            let Some((status, path)) = line.split_once('\t') else {
                continue;
            };
            let list = match status.chars().next() {
                Some('A') => &mut commit.added,
                Some('D') => &mut commit.removed,
                _ => &mut commit.modified,
            };
            list.push(path.to_owned());
        }
        Ok(commit)
    }

    /// A `git` command in this repository that trusts it whoever owns it.
    pub fn command(&self) -> Command {
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(&self.dir)
            .args(["-c", "safe.directory=*"]);
        command
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        let mut command = self.command();
        command.args(args);
        Ok(stdout_text(&run_within(&mut command, GIT_TIMEOUT)?))
    }
}

/// Whether `object` is an all-zero object name (a ref created or deleted).
pub(super) fn is_zero(object: &str) -> bool {
    !object.is_empty() && object.bytes().all(|b| b == b'0')
}
