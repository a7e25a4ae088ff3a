//! Rust source read with `syn`, for the pages generated from it: the items
//! of a set of files by name (structs, enums, functions), their doc
//! comments and their serde attributes. Reading the source keeps the
//! product crates free of documentation-only derives (schemars) and lets
//! the pages show what only the source says: doc comments, `default = ".."`
//! functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quote::ToTokens;

/// The items of some source files.
pub struct Sources {
    /// Every file's items, by file (relative to the repository's root).
    files: BTreeMap<PathBuf, syn::File>,
}

/// An item and the file it is in.
pub struct Found<'a, T> {
    /// The item.
    pub item: &'a T,
    /// Its file, relative to the repository's root.
    pub file: &'a Path,
}

impl Sources {
    /// Every `.rs` file under each of `dirs` (relative to `root`).
    pub fn read(root: &Path, dirs: &[&str]) -> Result<Sources> {
        let mut files = BTreeMap::new();
        for dir in dirs {
            for path in rust_files(&root.join(dir))? {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let file = syn::parse_file(&text)
                    .with_context(|| format!("cannot parse {}", path.display()))?;
                let relative = path.strip_prefix(root).unwrap_or(&path).to_owned();
                files.insert(relative, file);
            }
        }
        Ok(Sources { files })
    }

    /// The parsed file at `path` (relative to the root).
    pub fn file(&self, path: &str) -> Result<&syn::File> {
        self.files
            .get(Path::new(path))
            .with_context(|| format!("{path} was not read"))
    }

    /// The struct `name`: the one in `near` if there is one, else the first.
    pub fn struct_named(
        &self,
        name: &str,
        near: Option<&Path>,
    ) -> Option<Found<'_, syn::ItemStruct>> {
        self.find(near, |item| match item {
            syn::Item::Struct(found) if found.ident == name => Some(found),
            _ => None,
        })
    }

    /// The enum `name`, as [`Sources::struct_named`] finds structs.
    pub fn enum_named(&self, name: &str, near: Option<&Path>) -> Option<Found<'_, syn::ItemEnum>> {
        self.find(near, |item| match item {
            syn::Item::Enum(found) if found.ident == name => Some(found),
            _ => None,
        })
    }

    /// The function `name`, as [`Sources::struct_named`] finds structs.
    pub fn function_named(
        &self,
        name: &str,
        near: Option<&Path>,
    ) -> Option<Found<'_, syn::ItemFn>> {
        self.find(near, |item| match item {
            syn::Item::Fn(found) if found.sig.ident == name => Some(found),
            _ => None,
        })
    }

    fn find<'a, T>(
        &'a self,
        near: Option<&Path>,
        pick: impl Fn(&'a syn::Item) -> Option<&'a T>,
    ) -> Option<Found<'a, T>> {
        let in_file = |file: &'a Path, parsed: &'a syn::File| {
            top_items(&parsed.items)
                .into_iter()
                .find_map(&pick)
                .map(|item| Found { item, file })
        };
        let near = near.and_then(|near| self.files.get_key_value(near));
        near.and_then(|(file, parsed)| in_file(file, parsed))
            .or_else(|| {
                self.files
                    .iter()
                    .find_map(|(file, parsed)| in_file(file, parsed))
            })
    }
}

/// Items, also those of inline modules (but not `#[cfg(test)]` ones).
fn top_items(items: &[syn::Item]) -> Vec<&syn::Item> {
    let mut all = Vec::new();
    for item in items {
        match item {
            syn::Item::Mod(module) if !is_test_module(module) => {
                if let Some((_, inner)) = &module.content {
                    all.extend(top_items(inner));
                }
            }
            other => all.push(other),
        }
    }
    all
}

fn is_test_module(module: &syn::ItemMod) -> bool {
    module.attrs.iter().any(|attribute| {
        attribute.path().is_ident("cfg")
            && attribute
                .meta
                .to_token_stream()
                .to_string()
                .contains("test")
    })
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        // Test modules (`tests.rs`, `tests/`) may reuse the product's names.
        if path.file_stem().is_some_and(|stem| stem == "tests") {
            continue;
        }
        if path.is_dir() {
            found.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The doc comment in `attributes`, its lines without the one leading space.
pub fn doc(attributes: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attributes
        .iter()
        .filter(|attribute| attribute.path().is_ident("doc"))
        .filter_map(|attribute| match &attribute.meta {
            syn::Meta::NameValue(pair) => match &pair.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        // Rustdoc's link definitions (`[`Name`]: crate::Name`) mean nothing in the book.
        .filter(|line| !(line.starts_with('[') && line.contains("]: ")))
        .collect();
    without_intra_links(lines.join("\n").trim())
}

/// Rustdoc's intra-doc links (`` [`Name`] ``) as plain code spans.
fn without_intra_links(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 1..];
        let link = after
            .find("`]")
            .filter(|end| !after[..*end + 1].contains('\n'));
        match link {
            Some(end) if !after[end + 2..].starts_with('(') => {
                plain.push_str(&rest[..start]);
                plain.push_str(&after[..end + 1]);
                rest = &after[end + 2..];
            }
            _ => {
                plain.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    plain.push_str(rest);
    plain
}

/// The `//!` header of a file.
pub fn header(file: &syn::File) -> String {
    doc(&file.attrs)
}

/// A `#[serde(..)]` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serde {
    /// A bare word: `default`, `skip`, `flatten`, `deny_unknown_fields`.
    Flag(String),
    /// `name = "value"`: `default = "fn"`, `rename`, `rename_all`.
    Value(String, String),
}

/// The `#[serde(..)]` settings in `attributes`.
pub fn serde_settings(attributes: &[syn::Attribute]) -> Vec<Serde> {
    let mut settings = Vec::new();
    for attribute in attributes
        .iter()
        .filter(|attribute| attribute.path().is_ident("serde"))
    {
        // Settings this reader does not know are left out, not failed on.
        let _ = attribute.parse_nested_meta(|meta| {
            let name = meta.path.to_token_stream().to_string();
            if meta.input.peek(syn::Token![=]) {
                let value: syn::LitStr = meta.value()?.parse()?;
                settings.push(Serde::Value(name, value.value()));
            } else {
                settings.push(Serde::Flag(name));
            }
            Ok(())
        });
    }
    settings
}

/// The value of the `#[serde(name = "..")]` setting.
pub fn serde_value(settings: &[Serde], name: &str) -> Option<String> {
    settings.iter().find_map(|setting| match setting {
        Serde::Value(key, value) if key == name => Some(value.clone()),
        _ => None,
    })
}

/// Whether `#[serde(name)]` is set.
pub fn serde_flag(settings: &[Serde], name: &str) -> bool {
    settings
        .iter()
        .any(|setting| matches!(setting, Serde::Flag(key) if key == name))
}

/// A variant's or field's name as serde's `rename_all` writes it.
pub fn renamed(name: &str, rename_all: Option<&str>) -> String {
    let words = words(name);
    match rename_all {
        Some("snake_case") => words.join("_"),
        Some("kebab-case") => words.join("-"),
        Some("lowercase") => name.to_lowercase(),
        Some("UPPERCASE") => name.to_uppercase(),
        Some("SCREAMING_SNAKE_CASE") => words.join("_").to_uppercase(),
        _ => name.to_owned(),
    }
}

/// The lowercase words of a `CamelCase` or `snake_case` name.
fn words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for part in name.split('_').filter(|part| !part.is_empty()) {
        let mut word = String::new();
        for character in part.chars() {
            if character.is_uppercase() && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.extend(character.to_lowercase());
        }
        words.push(word);
    }
    words
}

/// A type as written, without spaces around `<`, `>` and `::`.
pub fn type_text(kind: &syn::Type) -> String {
    kind.to_token_stream()
        .to_string()
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" :: ", "::")
        .replace(" ,", ",")
        .replace("& '", "&'")
        .replace("& ", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_settings_are_read() {
        let item: syn::ItemStruct = syn::parse_quote! {
            /// The first line.
            ///
            /// The second paragraph.
            #[serde(default = "default_port", rename = "port")]
            #[serde(deny_unknown_fields)]
            struct Example;
        };
        let settings = serde_settings(&item.attrs);
        assert_eq!(
            serde_value(&settings, "default").as_deref(),
            Some("default_port")
        );
        assert_eq!(serde_value(&settings, "rename").as_deref(), Some("port"));
        assert!(serde_flag(&settings, "deny_unknown_fields"));
        assert_eq!(doc(&item.attrs), "The first line.\n\nThe second paragraph.");
    }

    #[test]
    fn intra_doc_links_become_code_spans() {
        assert_eq!(
            without_intra_links("[`router`] builds it; [`a`](b.md) stays; [`x`]"),
            "`router` builds it; [`a`](b.md) stays; `x`"
        );
    }

    #[test]
    fn names_are_renamed_as_serde_does() {
        assert_eq!(renamed("NotYetValid", Some("snake_case")), "not_yet_valid");
        assert_eq!(renamed("DryActivate", Some("kebab-case")), "dry-activate");
        assert_eq!(renamed("Github", Some("lowercase")), "github");
        assert_eq!(renamed("key_file", None), "key_file");
    }
}
