//! Which hosts a command acts on, as colmena users name them: `--host H`
//! (repeatable), `--on NAMES` (comma-separated host names, globs such as
//! `web-*`, `db-?` or `[ab]-1`, and tags such as `@prod`), `--all`, and the
//! host of `--flake PATH#HOST`. Any mix of them is one set: a host named
//! twice is acted on once, and the hosts come in push.toml's order (by
//! name), however they were named. A selector that matches no host is an
//! error that names it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use deployd_protocol::HostName;

use crate::flake::INVENTORY_FILE;

/// The selection options, shared by `push`, `push status` and `push rollback`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// This host (repeat for several).
    #[arg(long = "host", value_name = "HOST", help_heading = HEADING)]
    pub hosts: Vec<HostName>,
    /// Hosts by name, glob (`web-*`, `db-?`, `[ab]-1`) or tag (`@prod`,
    /// from a host's `tags` in push.toml), comma-separated, repeatable:
    /// `--on @prod,web-*,kelyus`. Each must match at least one host of
    /// push.toml.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', help_heading = HEADING)]
    pub on: Vec<Selector>,
    /// Every host of push.toml.
    #[arg(long, help_heading = HEADING)]
    pub all: bool,
}

/// The heading of the selection options in the help.
const HEADING: &str = "Selecting hosts (any mix; each host once, in push.toml's order by name)";

impl Selection {
    /// Whether nothing was named.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.on.is_empty() && !self.all
    }

    /// The same selection plus `host` (the one `--flake PATH#HOST` names).
    pub fn and_host(mut self, host: Option<&HostName>) -> Selection {
        self.hosts.extend(host.cloned());
        self
    }

    /// The hosts selected among `hosts` (push.toml's, each with its tags),
    /// each once, in push.toml's order (by name). Nothing named, a name
    /// push.toml lacks or a selector that matches nothing is an error.
    pub fn resolve<'a>(
        &self,
        hosts: impl IntoIterator<Item = (&'a HostName, &'a [Tag])>,
    ) -> Result<Vec<HostName>> {
        let hosts: Vec<(&HostName, &[Tag])> = hosts.into_iter().collect();
        if self.is_empty() {
            bail!("name the hosts with --on NAMES, --flake .#NAME or --host NAME, or use --all");
        }
        if hosts.is_empty() {
            bail!("the inventory has no hosts");
        }
        let mut chosen: BTreeSet<&HostName> = BTreeSet::new();
        if self.all {
            chosen.extend(hosts.iter().map(|(name, _)| *name));
        }
        for name in &self.hosts {
            let Some((name, _)) = hosts.iter().find(|(known, _)| *known == name) else {
                bail!("unknown host {name}: it is not in {INVENTORY_FILE}");
            };
            chosen.insert(name);
        }
        for selector in &self.on {
            let mut matched = false;
            for (name, tags) in &hosts {
                if selector.matches(name, tags) {
                    matched = true;
                    chosen.insert(name);
                }
            }
            if !matched {
                bail!("--on {selector}: {}", selector.why_nothing());
            }
        }
        Ok(chosen.into_iter().cloned().collect())
    }
}

/// One item of `--on`: a host's name, a glob over names, or `@TAG`.
#[derive(Debug, Clone)]
pub enum Selector {
    /// A host name, as written.
    Host(HostName),
    /// A glob (`*`, `?`, `[...]`) over host names.
    Glob(glob::Pattern),
    /// Every host with this tag.
    Tag(Tag),
}

/// The characters that make an item of `--on` a glob (a host name never
/// holds them).
const GLOB_CHARACTERS: [char; 4] = ['*', '?', '[', ']'];

impl Selector {
    /// Whether the host `name` (with its push.toml `tags`) is selected.
    fn matches(&self, name: &HostName, tags: &[Tag]) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        match self {
            Selector::Host(host) => host == name,
            Selector::Glob(pattern) => pattern.matches_with(name.as_str(), options),
            Selector::Tag(tag) => tags.contains(tag),
        }
    }

    /// Why it matched no host.
    fn why_nothing(&self) -> String {
        match self {
            Selector::Host(host) => format!("unknown host {host}: it is not in {INVENTORY_FILE}"),
            Selector::Glob(_) => format!("matches no host of {INVENTORY_FILE}"),
            Selector::Tag(tag) => format!("no host of {INVENTORY_FILE} has the tag {tag}"),
        }
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let written = written.trim();
        if written.is_empty() {
            return Err("an empty item (give host names, globs or @tags, comma-separated)".into());
        }
        if let Some(tag) = written.strip_prefix('@') {
            return tag.parse().map(Selector::Tag);
        }
        if written.contains(GLOB_CHARACTERS) {
            return glob::Pattern::new(written)
                .map(Selector::Glob)
                .map_err(|error| format!("{written:?} is not a valid glob: {error}"));
        }
        written
            .parse()
            .map(Selector::Host)
            .map_err(|error| format!("{error}"))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Host(host) => write!(formatter, "{host}"),
            Selector::Glob(pattern) => write!(formatter, "{}", pattern.as_str()),
            Selector::Tag(tag) => write!(formatter, "@{tag}"),
        }
    }
}

/// A host's tag in push.toml (`tags = ["prod", "web"]`), selected with
/// `--on @TAG`: a plain word of letters, digits, `-` and `_`, starting with
/// a letter or digit, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Tag(String);

impl FromStr for Tag {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let plain = written
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let starts_well = written.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !plain || !starts_well || written.len() > 63 {
            return Err(format!(
                "invalid tag {written:?}: a tag is a plain word (letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters)"
            ));
        }
        Ok(Tag(written.to_owned()))
    }
}

impl TryFrom<String> for Tag {
    type Error = String;

    fn try_from(written: String) -> Result<Self, Self::Error> {
        written.parse()
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// push.toml's hosts, in its order: `db-1` (tag prod), `lab` (none),
    /// `web-1`, `web-2` (tags web, prod).
    fn fleet() -> Vec<(HostName, Vec<Tag>)> {
        let tags = |tags: &[&str]| -> Vec<Tag> {
            tags.iter().map(|tag| tag.parse().expect("tag")).collect()
        };
        vec![
            ("db-1".parse().expect("name"), tags(&["prod"])),
            ("lab".parse().expect("name"), tags(&[])),
            ("web-1".parse().expect("name"), tags(&["web", "prod"])),
            ("web-2".parse().expect("name"), tags(&["web", "prod"])),
        ]
    }

    fn select(hosts: &[&str], on: &[&str], all: bool) -> Result<Vec<String>> {
        let selection = Selection {
            hosts: hosts
                .iter()
                .map(|host| host.parse().expect("name"))
                .collect(),
            on: on
                .iter()
                .map(|item| item.parse().expect("selector"))
                .collect(),
            all,
        };
        let fleet = fleet();
        let hosts = fleet.iter().map(|(name, tags)| (name, tags.as_slice()));
        Ok(selection
            .resolve(hosts)?
            .iter()
            .map(|name| name.to_string())
            .collect())
    }

    #[test]
    fn names_globs_and_tags() {
        assert_eq!(
            select(&[], &["@prod"], false).expect("tag"),
            ["db-1", "web-1", "web-2"]
        );
        assert_eq!(
            select(&[], &["web-*"], false).expect("glob"),
            ["web-1", "web-2"]
        );
        assert_eq!(
            select(&[], &["web-?"], false).expect("glob"),
            ["web-1", "web-2"]
        );
        assert_eq!(
            select(&[], &["[dl]*"], false).expect("glob"),
            ["db-1", "lab"]
        );
        assert_eq!(select(&[], &["web-[!1]"], false).expect("glob"), ["web-2"]);
        assert_eq!(
            select(&[], &["lab", "@web"], false).expect("mix"),
            ["lab", "web-1", "web-2"]
        );
        assert_eq!(
            select(&[], &[], true).expect("all"),
            ["db-1", "lab", "web-1", "web-2"]
        );
    }

    #[test]
    fn a_host_named_twice_is_selected_once_in_the_inventorys_order() {
        assert_eq!(
            select(
                &["web-2", "lab", "web-2"],
                &["web-*", "@prod", "lab"],
                false
            )
            .expect("mix"),
            ["db-1", "lab", "web-1", "web-2"]
        );
        assert_eq!(
            select(&["lab"], &["@web"], true).expect("all and more"),
            ["db-1", "lab", "web-1", "web-2"]
        );
    }

    #[test]
    fn a_selector_that_matches_nothing_is_named() {
        let error = |hosts: &[&str], on: &[&str]| {
            select(hosts, on, false).expect_err("nothing").to_string()
        };
        assert_eq!(
            error(&[], &["@web", "@staging"]),
            "--on @staging: no host of push.toml has the tag staging"
        );
        assert_eq!(
            error(&[], &["mail-*"]),
            "--on mail-*: matches no host of push.toml"
        );
        assert_eq!(
            error(&[], &["nope"]),
            "--on nope: unknown host nope: it is not in push.toml"
        );
        assert_eq!(
            error(&["nope"], &[]),
            "unknown host nope: it is not in push.toml"
        );
        assert!(error(&[], &[]).contains("--on NAMES"));
    }

    #[test]
    fn bad_selectors_and_tags_are_refused() {
        for bad in ["", "@", "@pro d", "@-x", "[web", "not a host", "web/1"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "web-*".parse::<Selector>().expect("glob").to_string(),
            "web-*"
        );
        assert_eq!(
            "@prod".parse::<Selector>().expect("tag").to_string(),
            "@prod"
        );
        for bad in ["", "a b", "-a", "a.b", "ä", &"a".repeat(64)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }
}
