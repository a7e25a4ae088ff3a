//! Revisions, resolved with git2 in the flake's repository: `HEAD`, a branch,
//! a tag or a short hash become one commit, and the build uses exactly that
//! commit (`git+file://...?rev=...`), never the work tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deployd_protocol::Revision;
use git2::{Oid, Repository, Status, StatusOptions};

/// The flake's repository.
pub struct FlakeRepository {
    repository: Repository,
    /// The repository's work tree.
    root: PathBuf,
    /// The flake's directory inside it (`""` at the root).
    subdir: String,
}

impl FlakeRepository {
    /// Opens the repository holding `flake_dir`.
    pub fn open(flake_dir: &Path) -> Result<Self> {
        let repository = Repository::discover(flake_dir)
            .with_context(|| format!("{} is not in a git repository", flake_dir.display()))?;
        let root = repository
            .workdir()
            .context("the flake's repository has no work tree")?
            .canonicalize()?;
        let flake_dir = flake_dir.canonicalize()?;
        let subdir = flake_dir
            .strip_prefix(&root)
            .map(|sub| sub.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(FlakeRepository {
            repository,
            root,
            subdir,
        })
    }

    /// The commit `spec` names.
    pub fn resolve(&self, spec: &str) -> Result<Revision> {
        let object = self
            .repository
            .revparse_single(spec)
            .with_context(|| format!("no revision {spec:?} in {}", self.root.display()))?;
        let commit = object
            .peel_to_commit()
            .with_context(|| format!("{spec:?} is not a commit"))?;
        Ok(commit.id().to_string().parse()?)
    }

    /// Whether `rev` is `ancestor` or descends from it; `None` when
    /// `ancestor` is not in this repository.
    pub fn descends_from(&self, rev: &Revision, ancestor: &Revision) -> Option<bool> {
        let (rev, ancestor) = (
            Oid::from_str(rev.as_str()).ok()?,
            Oid::from_str(ancestor.as_str()).ok()?,
        );
        self.repository.find_commit(ancestor).ok()?;
        if rev == ancestor {
            return Some(true);
        }
        self.repository.graph_descendant_of(rev, ancestor).ok()
    }

    /// The files of the work tree that differ from the commit checked out:
    /// changed or staged tracked files, and untracked files git does not
    /// ignore (paths relative to the repository's root). Builds never see
    /// them: they use the commit alone ([`FlakeRepository::flake_reference`]).
    pub fn uncommitted_changes(&self) -> Result<Vec<String>> {
        let mut options = StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .exclude_submodules(true);
        let statuses = self
            .repository
            .statuses(Some(&mut options))
            .with_context(|| format!("reading the status of {}", self.root.display()))?;
        Ok(statuses
            .iter()
            .filter(|entry| entry.status() != Status::CURRENT)
            .map(|entry| String::from_utf8_lossy(entry.path_bytes()).into_owned())
            .collect())
    }

    /// Whether the file at `path` would go into the Nix store with the
    /// flake: `None` when it lies outside the work tree or git ignores it.
    pub fn exposure(&self, path: &Path) -> Option<Exposure> {
        let path = path.canonicalize().ok()?;
        let relative = path.strip_prefix(&self.root).ok()?;
        if self.repository.is_path_ignored(relative).unwrap_or(false) {
            return None;
        }
        let status = self.repository.status_file(relative).ok()?;
        if status.intersects(Status::IGNORED) {
            return None;
        }
        let in_head = self
            .repository
            .head()
            .and_then(|head| head.peel_to_tree())
            .and_then(|tree| tree.get_path(relative))
            .is_ok();
        Some(if in_head {
            Exposure::Committed
        } else {
            Exposure::NotIgnored
        })
    }

    /// The flake reference of exactly `rev`.
    pub fn flake_reference(&self, rev: &Revision) -> String {
        let root = url_encoded(self.root.as_os_str().as_encoded_bytes());
        let mut reference = format!("git+file://{root}?rev={rev}");
        if !self.subdir.is_empty() {
            reference.push_str(&format!("&dir={}", url_encoded(self.subdir.as_bytes())));
        }
        reference
    }
}

/// How a file inside the flake's work tree reaches the Nix store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// It is in the commit checked out: every build copies it there.
    Committed,
    /// Neither committed nor ignored: `git add -A` and a commit would put
    /// it there.
    NotIgnored,
}

/// What a URL path may hold as it is: letters, digits and `/-._~`; the rest
/// (a space, `#`, `?`, `%`, `&`, non-ASCII bytes) percent-encoded, which Nix
/// decodes.
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn url_encoded(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, URL_PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_git::git;

    #[test]
    fn resolves_names_and_ancestry() {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
        let one = git(dir.path(), &["rev-parse", "HEAD"]);
        git(dir.path(), &["tag", "v1"]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "two"]);
        let two = git(dir.path(), &["rev-parse", "HEAD"]);
        git(dir.path(), &["checkout", "-q", "-b", "side", &one]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "side"]);
        let side = git(dir.path(), &["rev-parse", "HEAD"]);

        let repository = FlakeRepository::open(dir.path()).expect("open");
        let rev = |spec: &str| repository.resolve(spec).expect(spec);
        assert_eq!(rev("HEAD").as_str(), side);
        assert_eq!(rev("main").as_str(), two);
        assert_eq!(rev("v1").as_str(), one);
        assert_eq!(rev(&two[..8]).as_str(), two);
        assert!(repository.resolve("no-such-branch").is_err());

        assert_eq!(
            repository.descends_from(&rev("main"), &rev("v1")),
            Some(true)
        );
        assert_eq!(
            repository.descends_from(&rev("v1"), &rev("main")),
            Some(false)
        );
        assert_eq!(
            repository.descends_from(&rev("side"), &rev("main")),
            Some(false)
        );
        assert_eq!(
            repository.descends_from(&rev("main"), &rev("main")),
            Some(true)
        );
        let unknown: Revision = "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("rev");
        assert_eq!(repository.descends_from(&rev("main"), &unknown), None);
        assert!(repository
            .flake_reference(&rev("main"))
            .ends_with(&format!("?rev={two}")));
    }

    #[test]
    fn uncommitted_changes_and_exposed_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir(dir.path().join("hosts")).expect("dir");
        std::fs::write(dir.path().join("hosts/x.nix"), "{ }").expect("x");
        std::fs::write(dir.path().join(".gitignore"), "*.ignored\n").expect("ignore");
        std::fs::write(dir.path().join("committed.secret"), "k").expect("secret");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let repository = FlakeRepository::open(dir.path()).expect("open");
        assert!(repository.uncommitted_changes().expect("status").is_empty());

        std::fs::write(dir.path().join("hosts/x.nix"), "{ a = 1; }").expect("edit");
        std::fs::write(dir.path().join("keys.ignored"), "k").expect("ignored");
        std::fs::create_dir(dir.path().join("keys")).expect("dir");
        std::fs::write(dir.path().join("keys/ops.secret"), "k").expect("untracked");
        let mut changes = repository.uncommitted_changes().expect("status");
        changes.sort();
        assert_eq!(changes, ["hosts/x.nix", "keys/ops.secret"]);

        let exposure = |name: &str| repository.exposure(&dir.path().join(name));
        assert_eq!(exposure("committed.secret"), Some(Exposure::Committed));
        assert_eq!(exposure("keys/ops.secret"), Some(Exposure::NotIgnored));
        assert_eq!(exposure("keys.ignored"), None);
        assert_eq!(exposure("missing.secret"), None);
        let outside = tempfile::NamedTempFile::new().expect("outside");
        assert_eq!(repository.exposure(outside.path()), None);
    }

    #[test]
    fn a_path_with_url_characters_is_encoded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("my fleet #1?");
        std::fs::create_dir_all(&root).expect("dir");
        git(&root, &["init", "-q", "-b", "main"]);
        git(&root, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let repository = FlakeRepository::open(&root).expect("open");
        let rev = repository.resolve("HEAD").expect("HEAD");
        let reference = repository.flake_reference(&rev);
        assert!(
            reference.contains("/my%20fleet%20%231%3F?rev="),
            "{reference}"
        );
    }
}
