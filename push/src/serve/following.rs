//! `[[follow]]` of push serve's config: a branch, its hosts (named as
//! `push --on` names them) and how its pushes are deployed, with the
//! rollout's canary, batches and failure budget (see [`crate::batches`]).

use anyhow::Result;
use deployd_protocol::Action;

use crate::batches::Policy;
use crate::selection::Selector;

/// `[[follow]]`: a branch and what its pushes deploy.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Follow {
    /// The branch (`main`, not `refs/heads/main`).
    pub branch: String,
    /// The hosts, as `push --on` names them: names, globs (`web-*`) and
    /// tags (`@prod`) of push.toml, or `"*"` for all of them.
    pub hosts: Vec<String>,
    /// How to activate.
    #[serde(default = "default_action")]
    pub action: Action,
    /// Magic rollback: hosts roll back unless confirmed within this.
    #[serde(default)]
    pub confirm_s: Option<u64>,
    /// Canary hosts, deployed first: a count (`1`) or names
    /// (`"sambirano,isalo"`), as `push --canary`.
    #[serde(default)]
    pub canary: Option<CountOrText>,
    /// Batches after the canary: a count (`2`) or a percentage (`"25%"`),
    /// as `push --batch`.
    #[serde(default)]
    pub batch: Option<CountOrText>,
    /// Failures let through before no further host is started (default 0
    /// with a canary or batches), as `push --max-failures`.
    #[serde(default)]
    pub max_failures: Option<usize>,
}

/// A number or a string, as TOML writes `canary = 1` and `batch = "25%"`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum CountOrText {
    /// `1`.
    Count(u64),
    /// `"25%"`, `"sambirano,isalo"`.
    Text(String),
}

impl CountOrText {
    fn parse<T: std::str::FromStr<Err = String>>(&self) -> Result<T, String> {
        match self {
            CountOrText::Count(count) => count.to_string().parse(),
            CountOrText::Text(text) => text.parse(),
        }
    }
}

impl Follow {
    /// Its canary, batches and failure budget.
    pub fn policy(&self) -> Result<Policy> {
        let branch = &self.branch;
        let policy = Policy {
            canary: self
                .canary
                .as_ref()
                .map(CountOrText::parse)
                .transpose()
                .map_err(|error| anyhow::anyhow!("[[follow]] {branch}: canary: {error}"))?,
            batch: self
                .batch
                .as_ref()
                .map(CountOrText::parse)
                .transpose()
                .map_err(|error| anyhow::anyhow!("[[follow]] {branch}: batch: {error}"))?,
            max_failures: self.max_failures,
            budget_name: "max_failures",
        };
        policy
            .check()
            .map_err(|error| anyhow::anyhow!("[[follow]] {branch}: max_failures: {error}"))?;
        Ok(policy)
    }

    /// Its hosts, as selectors (`"*"`: every host).
    pub fn selectors(&self) -> Result<Vec<Selector>> {
        self.hosts
            .iter()
            .map(|host| host.parse::<Selector>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| anyhow::anyhow!("[[follow]] {}: hosts: {error}", self.branch))
    }
}

fn default_action() -> Action {
    Action::Switch
}

#[cfg(test)]
mod tests {
    use super::super::config::tests::{parse, VALID};
    use crate::batches::{BatchSize, Canary};

    #[test]
    fn follow_takes_a_rollout_policy_and_hosts_as_push_on_names_them() {
        let staged = VALID.replace(
            "hosts = [\"*\"]",
            "hosts = [\"@prod\", \"web-*\", \"kelyus\"]\ncanary = 1\nbatch = \"25%\"\nmax_failures = 1",
        );
        let config = parse(&staged).expect("valid");
        let follow = &config.follow[0];
        assert_eq!(follow.selectors().expect("selectors").len(), 3);
        let policy = follow.policy().expect("policy");
        assert_eq!(policy.canary, Some(Canary::Count(1)));
        assert_eq!(policy.batch, Some(BatchSize::Percent(25)));
        assert_eq!(policy.max_failures, Some(1));
        assert_eq!(policy.budget_name, "max_failures");
        let named = VALID.replace(
            "hosts = [\"*\"]",
            "hosts = [\"*\"]\ncanary = \"sambirano\"\nbatch = 2",
        );
        let policy = parse(&named).expect("valid").follow[0]
            .policy()
            .expect("policy");
        assert_eq!(
            policy.canary,
            Some(Canary::Names(vec!["sambirano".parse().expect("host")]))
        );
        assert_eq!(policy.batch, Some(BatchSize::Count(2)));
        for (keys, expected) in [
            ("canary = 0", "canary: the canary must be at least 1"),
            ("batch = \"0%\"", "batch: a batch must hold at least 1"),
            (
                "batch = \"150%\"",
                "batch: a batch of 150% is more than 100%",
            ),
            (
                "max_failures = 2",
                "max_failures: a failure budget needs a canary",
            ),
            ("canary = \"not a host\"", "canary: "),
        ] {
            let text = VALID.replace("hosts = [\"*\"]", &format!("hosts = [\"*\"]\n{keys}"));
            let error = parse(&text).expect_err(keys).to_string();
            assert!(error.contains(expected), "{keys}: {error}");
            assert!(error.starts_with("[[follow]] main: "), "{error}");
        }
    }
}
