//! Revisions, resolved with git2 in the flake's repository: `HEAD`, a branch,
//! a tag or a short hash become one commit, and the build uses exactly that
//! commit (`git+file://...?rev=...`), never the work tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deployd_protocol::Revision;
use git2::{Oid, Repository};

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
