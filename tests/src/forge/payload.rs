//! Hook bodies, built from one captured example per forge
//! (`tests/fixtures/forge/`), shaped as each forge's documentation shows its
//! payload, with our own values (repository `ops/fleet`):
//!
//! - GitHub push and ping: the examples behind "Webhook events and payloads"
//!   (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>,
//!   `#ping`; the generated examples live in
//!   <https://github.com/octokit/webhooks/tree/main/payload-examples/api.github.com>).
//!   GitHub sends compact JSON.
//! - Gitea push (<https://docs.gitea.com/usage/webhooks>, "Event
//!   information") with the fields current Gitea adds (`total_commits`,
//!   `head_commit`), and the `delete` event of `modules/structs/hook.go`
//!   (`DeletePayload`: `ref` short name, `ref_type`, `pusher_type`). Gitea
//!   and Forgejo send JSON indented by two spaces (`json.MarshalIndent`).
//! - Forgejo push (<https://forgejo.org/docs/latest/user/webhooks/>), the
//!   same shape as Gitea's.
//! - GitLab push (<https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events>),
//!   also the shape of its tag push (`#tag-events`, `object_kind`
//!   `tag_push`). GitLab sends compact JSON.
//!
//! A body is the fixture serialised once (minified for GitHub and GitLab,
//! as is for Gitea and Forgejo) with `ref`, `before`, `after` (GitLab:
//! `checkout_sha`) replaced, and what follows from them: GitHub's `created`,
//! `deleted`, `forced` and `compare`, and every forge's commit list, rebuilt
//! from the real commits of the push on the fixture's own commit object.
//! Everything else stays byte for byte. `ops/fleet` is replaced by the
//! stand-in's repository path wherever it occurs.

use anyhow::{Context, Result};

use super::json_text::{elements, get, minify, set, string};
use super::repo::{is_zero, CommitInfo, Repository};
use super::{ForgeKind, PushEvent};

const GITHUB_PUSH: &str = include_str!("../../fixtures/forge/github-push.json");
const GITHUB_PING: &str = include_str!("../../fixtures/forge/github-ping.json");
const GITEA_PUSH: &str = include_str!("../../fixtures/forge/gitea-push.json");
const GITEA_DELETE: &str = include_str!("../../fixtures/forge/gitea-delete.json");
const FORGEJO_PUSH: &str = include_str!("../../fixtures/forge/forgejo-push.json");
const GITLAB_PUSH: &str = include_str!("../../fixtures/forge/gitlab-push.json");

/// The repository path the fixtures name.
const FIXTURE_REPOSITORY: &str = "ops/fleet";
/// The head commit the fixtures name (replaced by each real commit).
const FIXTURE_COMMIT: &str = "9a7e3c1b5d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c";
/// Commits a Gitea or Forgejo hook lists (`[ui] FEED_MAX_COMMIT_NUM`).
const GITEA_LISTED_COMMITS: usize = 5;
/// Commits GitLab's "Test" push hook lists.
const GITLAB_TEST_COMMITS: usize = 3;

/// One hook to send: the event name the forge puts in its event header and
/// the exact body.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub event: String,
    pub body: Vec<u8>,
    pub reference: Option<String>,
    pub after: Option<String>,
}

/// What a body is built from.
pub(super) struct Source<'a> {
    pub kind: ForgeKind,
    pub repository: &'a Repository,
    pub owner_repo: &'a str,
}

impl Source<'_> {
    /// The hooks the forge sends for one ref update, in order. GitHub: one
    /// `push` (a deletion is a push with `deleted: true`). GitLab: one
    /// `Push Hook`, or `Tag Push Hook` for a tag. Gitea and Forgejo: a
    /// `push`, except for a deleted branch, which is a `delete` event alone;
    /// a deleted tag is a push to all zeros followed by a `delete`.
    pub fn push(&self, push: &PushEvent) -> Result<Vec<Outgoing>> {
        let deleted = is_zero(&push.after);
        let tag = push.reference.starts_with("refs/tags/");
        let outgoing = |event: &str, body: String| Outgoing {
            event: event.to_owned(),
            body: body.into_bytes(),
            reference: Some(push.reference.clone()),
            after: Some(push.after.clone()),
        };
        Ok(match self.kind {
            ForgeKind::GitHub => vec![outgoing("push", self.github_push(push)?)],
            ForgeKind::GitLab => {
                let event = if tag { "Tag Push Hook" } else { "Push Hook" };
                vec![outgoing(event, self.gitlab_push(push, None)?)]
            }
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                let mut hooks = Vec::new();
                if !deleted || tag {
                    hooks.push(outgoing("push", self.gitea_push(push)?));
                }
                if deleted {
                    hooks.push(outgoing("delete", self.gitea_delete(push)?));
                }
                hooks
            }
        })
    }

    /// The forge's test delivery: GitHub's `ping`; Gitea's and Forgejo's
    /// "Test Delivery" (a push of the default branch's tip with `before`
    /// equal to `after`); GitLab's "Test" of push events (a push of the
    /// default branch's last three commits).
    pub fn test_delivery(&self) -> Result<Outgoing> {
        if self.kind == ForgeKind::GitHub {
            return Ok(Outgoing {
                event: "ping".to_owned(),
                body: minify(&self.fixture(GITHUB_PING)).into_bytes(),
                reference: None,
                after: None,
            });
        }
        let (reference, tip) = self.repository.default_branch()?;
        let (event, body) = if self.kind == ForgeKind::GitLab {
            let listed = self.repository.recent_commits(&tip, GITLAB_TEST_COMMITS)?;
            let oldest = listed
                .last()
                .map_or(tip.as_str(), |commit| commit.id.as_str());
            let before = match self.repository.commit_of(&format!("{oldest}^")) {
                Some(parent) => parent,
                None => self.repository.zero_id()?,
            };
            let push = PushEvent {
                reference: reference.clone(),
                before,
                after: tip.clone(),
            };
            ("Push Hook", self.gitlab_push(&push, Some(listed))?)
        } else {
            let push = PushEvent {
                reference: reference.clone(),
                before: tip.clone(),
                after: tip.clone(),
            };
            ("push", self.gitea_push(&push)?)
        };
        Ok(Outgoing {
            event: event.to_owned(),
            body: body.into_bytes(),
            reference: Some(reference),
            after: Some(tip),
        })
    }

    fn fixture(&self, text: &str) -> String {
        text.trim_end().replace(FIXTURE_REPOSITORY, self.owner_repo)
    }

    fn github_push(&self, push: &PushEvent) -> Result<String> {
        let created = is_zero(&push.before);
        let deleted = is_zero(&push.after);
        let forced =
            !created && !deleted && !self.repository.is_ancestor(&push.before, &push.after);
        let mut doc = minify(&self.fixture(GITHUB_PUSH));
        let web = unquote(get(get(&doc, "repository")?, "html_url")?)?;
        let compare = if created {
            format!("{web}/compare/{}", short_name(&push.reference))
        } else {
            format!(
                "{web}/compare/{}...{}",
                abbreviate(&push.before),
                abbreviate(&push.after)
            )
        };
        let template = first_commit(&doc)?;
        let (commits, head) = if deleted {
            (Vec::new(), None)
        } else {
            let (commits, _) = self.repository.pushed_commits(&push.before, &push.after)?;
            let head = commits.first().cloned();
            let listed = if push.reference.starts_with("refs/tags/") {
                Vec::new()
            } else {
                commits
            };
            (listed, head)
        };
        let render = |commit: &CommitInfo| github_commit(&template, commit);
        let listed = commits.iter().map(render).collect::<Result<Vec<_>>>()?;
        let head = match &head {
            Some(commit) => render(commit)?,
            None => "null".to_owned(),
        };
        for (key, value) in [
            ("ref", string(&push.reference)),
            ("before", string(&push.before)),
            ("after", string(&push.after)),
            ("created", created.to_string()),
            ("deleted", deleted.to_string()),
            ("forced", forced.to_string()),
            ("compare", string(&compare)),
            ("commits", array(&listed, None)),
            ("head_commit", head),
        ] {
            doc = set(&doc, key, &value)?;
        }
        Ok(doc)
    }

    fn gitea_push(&self, push: &PushEvent) -> Result<String> {
        let fixture = if self.kind == ForgeKind::Forgejo {
            FORGEJO_PUSH
        } else {
            GITEA_PUSH
        };
        let mut doc = self.fixture(fixture);
        let deleted = is_zero(&push.after);
        let tag = push.reference.starts_with("refs/tags/");
        let template = first_commit(&doc)?;
        let (commits, total) = if deleted {
            (Vec::new(), 0)
        } else {
            self.repository.pushed_commits(&push.before, &push.after)?
        };
        let head = match commits.first() {
            Some(commit) => outdent(&gitea_commit(&template, commit)?),
            None => "null".to_owned(),
        };
        let listed = if tag { &[][..] } else { &commits[..] };
        let listed = listed
            .iter()
            .take(GITEA_LISTED_COMMITS)
            .map(|commit| gitea_commit(&template, commit))
            .collect::<Result<Vec<_>>>()?;
        let compare = unquote(get(&doc, "compare_url")?)?;
        let compare = match compare.rsplit_once("/compare/") {
            Some((base, _)) if !deleted => {
                format!("{base}/compare/{}...{}", push.before, push.after)
            }
            _ => String::new(),
        };
        for (key, value) in [
            ("ref", string(&push.reference)),
            ("before", string(&push.before)),
            ("after", string(&push.after)),
            ("compare_url", string(&compare)),
            ("commits", array(&listed, Some(2))),
            ("total_commits", if tag { 0 } else { total }.to_string()),
            ("head_commit", head),
        ] {
            doc = set(&doc, key, &value)?;
        }
        Ok(doc)
    }

    fn gitea_delete(&self, push: &PushEvent) -> Result<String> {
        let fixture = if self.kind == ForgeKind::Forgejo {
            FORGEJO_PUSH
        } else {
            GITEA_PUSH
        };
        let pushed = self.fixture(fixture);
        let tag = push.reference.starts_with("refs/tags/");
        let mut doc = self.fixture(GITEA_DELETE);
        for (key, value) in [
            ("ref", string(short_name(&push.reference))),
            ("ref_type", string(if tag { "tag" } else { "branch" })),
            ("repository", get(&pushed, "repository")?.to_owned()),
            ("sender", get(&pushed, "sender")?.to_owned()),
        ] {
            doc = set(&doc, key, &value)?;
        }
        Ok(doc)
    }

    /// GitLab's push or tag push; `listed` overrides the commits (the test
    /// delivery's last three).
    fn gitlab_push(&self, push: &PushEvent, listed: Option<Vec<CommitInfo>>) -> Result<String> {
        let deleted = is_zero(&push.after);
        let tag = push.reference.starts_with("refs/tags/");
        let mut doc = minify(&self.fixture(GITLAB_PUSH));
        let template = first_commit(&doc)?;
        let (commits, total) = match listed {
            Some(commits) => {
                let total = commits.len();
                (commits, total)
            }
            None if deleted || tag => (Vec::new(), 0),
            None => self.repository.pushed_commits(&push.before, &push.after)?,
        };
        let commits = commits
            .iter()
            .map(|commit| gitlab_commit(&template, commit))
            .collect::<Result<Vec<_>>>()?;
        let checkout = if deleted {
            "null".to_owned()
        } else {
            string(
                &self
                    .repository
                    .commit_of(&push.after)
                    .unwrap_or_else(|| push.after.clone()),
            )
        };
        let kind = if tag { "tag_push" } else { "push" };
        for (key, value) in [
            ("object_kind", string(kind)),
            ("event_name", string(kind)),
            ("before", string(&push.before)),
            ("after", string(&push.after)),
            ("ref", string(&push.reference)),
            ("checkout_sha", checkout),
            ("commits", array(&commits, None)),
            ("total_commits_count", total.to_string()),
        ] {
            doc = set(&doc, key, &value)?;
        }
        Ok(doc)
    }
}

/// `refs/heads/main` → `main`, `refs/tags/v1` → `v1`.
fn short_name(reference: &str) -> &str {
    reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
}

/// The first 12 digits of an object name, as GitHub's compare URLs show it.
fn abbreviate(object: &str) -> &str {
    object.get(..12).unwrap_or(object)
}

fn unquote(raw: &str) -> Result<String> {
    serde_json::from_str(raw).with_context(|| format!("{raw} is not a JSON string"))
}

/// The fixture's first commit object, the template of every listed commit.
fn first_commit(doc: &str) -> Result<String> {
    let commits = get(doc, "commits")?;
    let first = elements(commits)?
        .into_iter()
        .next()
        .context("the fixture lists no commit")?;
    Ok(first.to_owned())
}

/// A JSON array of raw `items`; `indent` is the indentation of the key that
/// holds it in a pretty document (`None`: compact).
fn array(items: &[String], indent: Option<usize>) -> String {
    match indent {
        _ if items.is_empty() => "[]".to_owned(),
        None => format!("[{}]", items.join(",")),
        Some(indent) => {
            let inner = " ".repeat(indent + 2);
            let joined = items.join(&format!(",\n{inner}"));
            format!("[\n{inner}{joined}\n{}]", " ".repeat(indent))
        }
    }
}

/// A commit object moved one level up (from `commits[0]` to `head_commit`)
/// in a document indented by two spaces.
fn outdent(object: &str) -> String {
    object.replace("\n  ", "\n")
}

/// The indentation of the keys of a pretty `object` (`None`: compact).
fn key_indent(object: &str) -> Option<usize> {
    let line = object.split('\n').nth(1)?;
    Some(line.len() - line.trim_start().len())
}

fn strings(items: &[String], indent: Option<usize>) -> String {
    let quoted: Vec<String> = items.iter().map(|item| string(item)).collect();
    array(&quoted, indent)
}

fn person(object: &str, name: &str, email: &str) -> Result<String> {
    set(
        &set(object, "name", &string(name))?,
        "email",
        &string(email),
    )
}

fn github_commit(template: &str, commit: &CommitInfo) -> Result<String> {
    let mut object = template.replace(FIXTURE_COMMIT, &commit.id);
    let author = person(
        get(&object, "author")?,
        &commit.author_name,
        &commit.author_email,
    )?;
    let committer = person(
        get(&object, "committer")?,
        &commit.committer_name,
        &commit.committer_email,
    )?;
    for (key, value) in [
        ("tree_id", string(&commit.tree)),
        ("message", string(commit.message.trim_end())),
        ("timestamp", string(&commit.timestamp)),
        ("author", author),
        ("committer", committer),
        ("added", strings(&commit.added, None)),
        ("removed", strings(&commit.removed, None)),
        ("modified", strings(&commit.modified, None)),
    ] {
        object = set(&object, key, &value)?;
    }
    Ok(object)
}

fn gitea_commit(template: &str, commit: &CommitInfo) -> Result<String> {
    let mut object = template.replace(FIXTURE_COMMIT, &commit.id);
    let indent = key_indent(&object);
    let author = person(
        get(&object, "author")?,
        &commit.author_name,
        &commit.author_email,
    )?;
    let committer = person(
        get(&object, "committer")?,
        &commit.committer_name,
        &commit.committer_email,
    )?;
    for (key, value) in [
        ("message", string(&commit.message)),
        ("timestamp", string(&commit.timestamp)),
        ("author", author),
        ("committer", committer),
        ("added", strings(&commit.added, indent)),
        ("removed", strings(&commit.removed, indent)),
        ("modified", strings(&commit.modified, indent)),
    ] {
        object = set(&object, key, &value)?;
    }
    Ok(object)
}

fn gitlab_commit(template: &str, commit: &CommitInfo) -> Result<String> {
    let mut object = template.replace(FIXTURE_COMMIT, &commit.id);
    let author = person(
        get(&object, "author")?,
        &commit.author_name,
        &commit.author_email,
    )?;
    let title = commit.message.lines().next().unwrap_or_default();
    for (key, value) in [
        ("message", string(&commit.message)),
        ("title", string(title)),
        ("timestamp", string(&commit.timestamp)),
        ("author", author),
        ("added", strings(&commit.added, None)),
        ("modified", strings(&commit.modified, None)),
        ("removed", strings(&commit.removed, None)),
    ] {
        object = set(&object, key, &value)?;
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_valid_json_naming_the_fixture_commit() {
        for fixture in [
            GITHUB_PUSH,
            GITHUB_PING,
            GITEA_PUSH,
            GITEA_DELETE,
            FORGEJO_PUSH,
            GITLAB_PUSH,
        ] {
            let value: serde_json::Value = serde_json::from_str(fixture).expect("fixture JSON");
            assert!(value.is_object());
        }
        for push in [GITHUB_PUSH, GITEA_PUSH, FORGEJO_PUSH, GITLAB_PUSH] {
            assert!(push.contains(FIXTURE_COMMIT));
            assert!(push.contains(FIXTURE_REPOSITORY));
        }
    }

    #[test]
    fn pretty_arrays_keep_the_documents_indentation() {
        let items = vec!["1".to_owned(), "2".to_owned()];
        assert_eq!(array(&items, Some(2)), "[\n    1,\n    2\n  ]");
        assert_eq!(array(&items, None), "[1,2]");
        assert_eq!(array(&[], Some(2)), "[]");
        assert_eq!(key_indent("{\n      \"id\": 1\n    }"), Some(6));
        assert_eq!(key_indent("{\"id\":1}"), None);
        assert_eq!(
            outdent("{\n      \"id\": 1\n    }"),
            "{\n    \"id\": 1\n  }"
        );
    }
}
