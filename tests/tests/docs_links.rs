//! Every link between the book's pages (`docs/src`) and from the README
//! leads somewhere: a relative link names a file that exists, a `#anchor`
//! names a heading of the page it points at (by the id mdBook gives that
//! heading), every entry of `SUMMARY.md` exists, and every page under
//! `docs/src` is in `SUMMARY.md`. A book page links within the book only
//! (mdBook publishes `docs/src` alone). So moving or renaming a page or a
//! heading cannot leave a dead link behind.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn parser(markdown: &str) -> Parser<'_> {
    // mdBook's Markdown: CommonMark with tables, footnotes, strikethrough,
    // task lists and heading attributes.
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    Parser::new_ext(markdown, options)
}

/// The id mdBook gives a heading of this text: letters, digits, `_` and `-`
/// kept (lowercased), whitespace made `-`, everything else dropped.
fn heading_id(text: &str) -> String {
    text.chars()
        .filter_map(|character| {
            if character.is_alphanumeric() || character == '_' || character == '-' {
                Some(character.to_ascii_lowercase())
            } else if character.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The ids of a page's headings; a repeated one gets `-1`, `-2`, ... as
/// mdBook numbers them.
fn heading_ids(markdown: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<(String, Option<String>)> = None;
    for event in parser(markdown) {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                heading = Some((String::new(), id.map(|id| id.to_string())));
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((content, _)) = heading.as_mut() {
                    content.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((content, explicit)) = heading.take() else {
                    continue;
                };
                let id = explicit.unwrap_or_else(|| heading_id(&content));
                let count = seen.entry(id.clone()).or_insert(0);
                ids.insert(if *count == 0 {
                    id.clone()
                } else {
                    format!("{id}-{count}")
                });
                *count += 1;
            }
            _ => {}
        }
    }
    ids
}

/// Every link and image target of a page, in order.
fn targets(markdown: &str) -> Vec<String> {
    parser(markdown)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// A target that leaves the repository: another site, mail.
fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// `base/relative` with `.` and `..` taken away, without touching the disk.
fn joined(base: &Path, relative: &str) -> PathBuf {
    let mut path = PathBuf::new();
    for component in base.join(relative).components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

/// What is wrong with the links of `root`'s README.md and `docs/src`, one
/// sentence each; empty when nothing is. The second value counts the links
/// checked.
fn problems(root: &Path) -> (Vec<String>, usize) {
    let book = root.join("docs/src");
    let mut pages = markdown_files(&book);
    pages.sort();
    // SUMMARY.md's links are its entries, checked on their own below.
    let summary = book.join("SUMMARY.md");
    let mut files = vec![root.join("README.md")];
    files.extend(pages.iter().filter(|page| **page != summary).cloned());
    let mut found = Vec::new();
    let mut checked = 0;
    let mut texts: HashMap<PathBuf, String> = HashMap::new();
    for file in &files {
        let name = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        for target in targets(&text) {
            if is_external(&target) {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            if path.starts_with('/') {
                found.push(format!("{name}: {target}: an absolute path"));
                continue;
            }
            let destination = if path.is_empty() {
                file.clone()
            } else {
                joined(file.parent().expect("a folder"), path)
            };
            if file.starts_with(&book) && !destination.starts_with(&book) {
                found.push(format!("{name}: {target}: leaves the book (docs/src)"));
                continue;
            }
            if !destination.exists() {
                found.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let page = texts
                .entry(destination.clone())
                .or_insert_with(|| std::fs::read_to_string(&destination).unwrap_or_default());
            if !heading_ids(page).contains(anchor) {
                found.push(format!("{name}: {target}: no heading with the id {anchor}"));
            }
        }
    }
    found.extend(summary_problems(&book, &pages));
    (found, checked)
}

/// SUMMARY.md's entries exist, and every page is one of them.
fn summary_problems(book: &Path, pages: &[PathBuf]) -> Vec<String> {
    let summary = book.join("SUMMARY.md");
    let Ok(text) = std::fs::read_to_string(&summary) else {
        return vec!["docs/src/SUMMARY.md: missing".to_owned()];
    };
    let entries: BTreeSet<PathBuf> = targets(&text)
        .iter()
        .filter(|target| !is_external(target))
        .map(|target| joined(book, target.split('#').next().unwrap_or_default()))
        .collect();
    let mut found = Vec::new();
    for entry in &entries {
        if !entry.is_file() {
            found.push(format!(
                "docs/src/SUMMARY.md: {}: no such page",
                entry.strip_prefix(book).unwrap_or(entry).display()
            ));
        }
    }
    for page in pages {
        if page != &summary && !entries.contains(page) {
            found.push(format!(
                "docs/src/{}: not in SUMMARY.md",
                page.strip_prefix(book).unwrap_or(page).display()
            ));
        }
    }
    found
}

/// Every `.md` file under `dir`, at any depth.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(markdown_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "md") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_link_of_the_readme_and_the_book_leads_somewhere() {
    let (found, checked) = problems(&workspace());
    assert!(found.is_empty(), "dead links:\n{}", found.join("\n"));
    // The README links into the book and the book's pages to each other:
    // far more than a handful.
    assert!(checked >= 100, "only {checked} links checked");
}

#[test]
fn a_dead_link_a_wrong_anchor_and_a_page_left_out_are_found() {
    let root = tempfile::tempdir().expect("temp dir");
    let book = root.path().join("docs/src");
    std::fs::create_dir_all(book.join("guide")).expect("folders");
    let write = |path: &str, text: &str| {
        std::fs::write(root.path().join(path), text).expect("write");
    };
    write(
        "README.md",
        "[book](docs/src/intro.md) [gone](docs/src/gone.md) [site](https://example.org/)\n",
    );
    write(
        "docs/src/SUMMARY.md",
        "# Summary\n\n[Intro](intro.md)\n- [Missing](missing.md)\n",
    );
    write(
        "docs/src/intro.md",
        "# Intro\n\n## The daemon: `deployd`\n\n## Usage\n\n## Usage\n\n\
         [ok](#the-daemon-deployd) [second](#usage-1) [wrong](#the-daemon) \
         [guide](guide/page.md#nowhere) [out](../../README.md)\n",
    );
    write(
        "docs/src/guide/page.md",
        "# A page\n\n[back](../intro.md#intro)\n",
    );

    let (found, checked) = problems(root.path());
    let expected = [
        "README.md: docs/src/gone.md: no such file",
        "docs/src/intro.md: #the-daemon: no heading with the id the-daemon",
        "docs/src/intro.md: guide/page.md#nowhere: no heading with the id nowhere",
        "docs/src/intro.md: ../../README.md: leaves the book (docs/src)",
        "docs/src/SUMMARY.md: missing.md: no such page",
        "docs/src/guide/page.md: not in SUMMARY.md",
    ];
    for problem in expected {
        assert!(
            found.iter().any(|line| line.ends_with(problem)),
            "not found: {problem}; found:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expected.len(), "found:\n{}", found.join("\n"));
    // The external link is not checked here, nor SUMMARY.md's (as entries
    // instead); the others are.
    assert_eq!(checked, 8);
}

#[test]
fn heading_ids_are_the_ones_mdbook_gives() {
    assert_eq!(heading_id("The daemon: `deployd`"), "the-daemon-deployd");
    assert_eq!(heading_id("On push's side"), "on-pushs-side");
    assert_eq!(heading_id("2. Enabling the hosts"), "2-enabling-the-hosts");
    assert_eq!(heading_id("HTTP API (v1)"), "http-api-v1");
    let ids = heading_ids("# A\n\n## Usage\n\n## Usage\n\n### Usage\n\n## B {#custom}\n");
    let expected: BTreeSet<String> = ["a", "usage", "usage-1", "usage-2", "custom"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids, expected);
}
