//! The book's reference pages (`docs/src/reference/*.md`), generated from
//! the code: the command lines from the real binaries' help, the config
//! files from their structs' fields, doc comments and serde attributes, the
//! NixOS module's options by evaluating it with Nix, the error codes from
//! their enums and the HTTP API from the routers and their endpoint
//! modules' headers.
//!
//! `tests/tests/reference_is_current.rs` regenerates every page and fails
//! when a committed one differs; [`UPDATE_COMMAND`] writes them instead.

mod cli;
mod config;
mod errors;
mod http_api;
mod markdown;
mod module_options;
mod source;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The command that rewrites the pages from the code.
pub const UPDATE_COMMAND: &str = "scripts/update-reference";

/// The environment variable under which the test writes the pages instead
/// of comparing them.
pub const UPDATE_VARIABLE: &str = "DEPLOYD_UPDATE_REFERENCE";

/// Where the pages live, in the repository.
pub const PAGES_DIR: &str = "docs/src/reference";

/// One generated page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Its file name in [`PAGES_DIR`].
    pub name: &'static str,
    /// Its whole text.
    pub text: String,
}

/// What the generators need from outside the source tree.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The repository's root.
    pub root: PathBuf,
    /// The `push` binary.
    pub push: PathBuf,
    /// The `deployd` binary.
    pub deployd: PathBuf,
}

/// Every page, generated.
pub fn generate(inputs: &Inputs) -> Result<Vec<Page>> {
    let root = &inputs.root;
    let page = |name: &'static str, body: Result<String>| -> Result<Page> {
        let body = body.with_context(|| format!("generating {PAGES_DIR}/{name}"))?;
        Ok(Page {
            name,
            text: markdown::with_header(&body),
        })
    };
    Ok(vec![
        page("push.md", cli::page(&inputs.push, "push"))?,
        page("deployd.md", cli::page(&inputs.deployd, "deployd"))?,
        page("config.md", config::daemon_page(root))?,
        page("inventory.md", config::inventory_page(root))?,
        page("serve-config.md", config::serve_page(root))?,
        page("module-options.md", module_options::page(root))?,
        page("error-codes.md", errors::page(root))?,
        page("http-api.md", http_api::page(root))?,
    ])
}

/// A page whose committed text is not what the code generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// Its path, relative to the repository's root.
    pub path: PathBuf,
    /// The first line that differs (from 1), or `None` when the file is missing.
    pub first_difference: Option<usize>,
}

/// The pages under `root` that differ from `pages`.
pub fn stale_pages(root: &Path, pages: &[Page]) -> Vec<Stale> {
    pages
        .iter()
        .filter_map(|page| {
            let path = Path::new(PAGES_DIR).join(page.name);
            let first_difference = match std::fs::read_to_string(root.join(&path)) {
                Ok(committed) if committed == page.text => return None,
                Ok(committed) => Some(first_difference(&committed, &page.text)),
                Err(_) => None,
            };
            Some(Stale {
                path,
                first_difference,
            })
        })
        .collect()
}

/// The first line (from 1) where two texts differ.
fn first_difference(left: &str, right: &str) -> usize {
    let mut left_lines = left.split_inclusive('\n');
    let mut right_lines = right.split_inclusive('\n');
    let mut line = 1;
    while left_lines.next() == right_lines.next() {
        line += 1;
    }
    line
}

/// Writes `pages` under `root`.
pub fn write_pages(root: &Path, pages: &[Page]) -> Result<()> {
    let dir = root.join(PAGES_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for page in pages {
        let path = dir.join(page.name);
        std::fs::write(&path, &page.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> Page {
        Page {
            name: "example.md",
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_page_equal_to_the_committed_one_is_current() {
        let root = tempfile::tempdir().expect("a temporary directory");
        write_pages(root.path(), &[page("# Example\n\none\n")]).expect("written");
        assert_eq!(stale_pages(root.path(), &[page("# Example\n\none\n")]), []);
    }

    #[test]
    fn a_changed_page_is_stale_from_its_first_different_line() {
        let root = tempfile::tempdir().expect("a temporary directory");
        write_pages(root.path(), &[page("# Example\n\none\ntwo\n")]).expect("written");
        let stale = stale_pages(root.path(), &[page("# Example\n\none\nthree\n")]);
        assert_eq!(
            stale,
            [Stale {
                path: PathBuf::from("docs/src/reference/example.md"),
                first_difference: Some(4),
            }]
        );
        // A line added at the end counts too.
        let longer = stale_pages(root.path(), &[page("# Example\n\none\ntwo\nmore\n")]);
        assert_eq!(longer[0].first_difference, Some(5));
    }

    #[test]
    fn a_missing_page_is_stale() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let stale = stale_pages(root.path(), &[page("# Example\n")]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].first_difference, None);
    }
}
