//! The config files' pages (deployd's config, push.toml, push serve's
//! config), from the structs they are parsed into: every table and key,
//! its TOML type, its default and its doc comment, read from the source
//! with `syn` (see `source.rs`) and its serde attributes (`default`,
//! `default = "fn"`, `rename`, `rename_all`, `skip`, `flatten`,
//! `try_from`).
//!
//! A `default = "fn"` is shown by evaluating the function when its body is
//! a plain value (`60`, `PathBuf::from("..")`, `"..".into()`, an enum
//! variant); otherwise the function's doc comment must say it, and the page
//! fails to generate until it does.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::{Context, Result};

mod defaults;
mod shape;

use super::markdown::{code, one_line, table};
use super::source::{doc, renamed, serde_flag, serde_settings, serde_value, Found, Sources};
use defaults::evaluate;
use shape::{last_segment, Shape};

/// One config file's page.
struct Spec<'a> {
    /// The page's title.
    title: &'a str,
    /// What it opens with.
    intro: &'a str,
    /// The folders whose source defines the structs.
    dirs: &'a [&'a str],
    /// The file of the struct the whole file is parsed into.
    file: &'a str,
    /// That struct.
    root: &'a str,
}

/// deployd's config file.
pub fn daemon_page(root: &Path) -> Result<String> {
    page(
        root,
        &Spec {
            title: "deployd's config file",
            intro: "deployd reads its config from `/etc/deployd/config.toml`, or the file `--config` names (the NixOS module writes it from `services.deployd.settings`). `deployd check-config` checks a file and exits.",
            dirs: &["daemon/src", "protocol/src"],
            file: "daemon/src/config.rs",
            root: "ConfigFile",
        },
    )
}

/// push.toml.
pub fn inventory_page(root: &Path) -> Result<String> {
    page(
        root,
        &Spec {
            title: "push.toml, the inventory",
            intro: "`push` reads the hosts and the settings they share from `push.toml` at the flake's root. Paths are relative to the flake's root.",
            dirs: &["push/src", "protocol/src"],
            file: "push/src/inventory.rs",
            root: "Inventory",
        },
    )
}

/// push serve's config.
pub fn serve_page(root: &Path) -> Result<String> {
    page(
        root,
        &Spec {
            title: "push serve's config file",
            intro: "`push serve --config FILE` reads this file (the NixOS module writes it from `services.deployd.forge.settings`); `push serve --check` checks it and exits. Secrets are only ever paths to files.",
            dirs: &["push/src", "protocol/src"],
            file: "push/src/serve/config.rs",
            root: "ServeConfig",
        },
    )
}

/// A table of the file still to document: its struct and how it is written.
struct Table {
    /// The struct.
    name: String,
    /// The file it is used from (where its own items are looked for first).
    near: std::path::PathBuf,
    /// Its heading: `Top-level keys`, `[nix]`, `[[trusted_keys]]`, `[hosts.NAME]`.
    heading: String,
    /// Its dotted path in the file (empty at the top).
    path: String,
}

fn page(root: &Path, spec: &Spec) -> Result<String> {
    let sources = Sources::read(root, spec.dirs)?;
    let mut text = format!("# {}\n\n{}", spec.title, spec.intro);
    let top = sources
        .struct_named(spec.root, Some(Path::new(spec.file)))
        .with_context(|| format!("no struct {} in {}", spec.root, spec.file))?;
    if serde_flag(&serde_settings(&top.item.attrs), "deny_unknown_fields") {
        text.push_str(" Unknown keys are errors.");
    }
    text.push('\n');
    let mut queue = VecDeque::from([Table {
        name: spec.root.to_owned(),
        near: Path::new(spec.file).to_owned(),
        heading: "Top-level keys".to_owned(),
        path: String::new(),
    }]);
    // Depth first: a table's own tables come right after it.
    while let Some(table) = queue.pop_front() {
        let mut inner = VecDeque::new();
        text.push_str(&table_text(&sources, &table, &mut inner)?);
        while let Some(next) = inner.pop_back() {
            queue.push_front(next);
        }
    }
    Ok(text)
}

/// A table's section; the tables inside it join `queue`.
fn table_text(sources: &Sources, table: &Table, queue: &mut VecDeque<Table>) -> Result<String> {
    let found = sources
        .struct_named(&table.name, Some(&table.near))
        .with_context(|| format!("no struct {}", table.name))?;
    let heading = if table.path.is_empty() {
        table.heading.clone()
    } else {
        code(&table.heading)
    };
    let mut text = format!("\n## {heading}\n\n");
    let description = doc(&found.item.attrs);
    // A doc comment that only names the table says nothing the heading does not.
    if !description.is_empty() && description != format!("{}.", code(&table.heading)) {
        text.push_str(&format!(
            "{}\n\n",
            one_line(&description).replace("<br>", "\n\n")
        ));
    }
    let mut rows = Vec::new();
    for field in fields(sources, &found)? {
        rows.push(field_row(sources, &found, field, table, queue)?);
    }
    text.push_str(&table_rows(rows));
    Ok(text)
}

fn table_rows(rows: Vec<Vec<String>>) -> String {
    table(&["Key", "Type", "Default", "Description"], &rows)
}

/// A struct's fields as the file has them: `skip` left out, `flatten`
/// ones replaced by their struct's.
fn fields<'a>(sources: &'a Sources, found: &Found<'a, syn::ItemStruct>) -> Result<Vec<Field<'a>>> {
    let rename_all = serde_value(&serde_settings(&found.item.attrs), "rename_all");
    let mut all = Vec::new();
    for field in &found.item.fields {
        let settings = serde_settings(&field.attrs);
        if serde_flag(&settings, "skip") || serde_flag(&settings, "skip_deserializing") {
            continue;
        }
        let ident = field
            .ident
            .as_ref()
            .context("a config struct with unnamed fields")?;
        if serde_flag(&settings, "flatten") {
            let name = last_segment(&field.ty).context("a flattened field of no named type")?;
            let inner = sources
                .struct_named(&name, Some(found.file))
                .with_context(|| format!("no struct {name} to flatten"))?;
            all.extend(fields(sources, &inner)?);
            continue;
        }
        let key = serde_value(&settings, "rename")
            .unwrap_or_else(|| renamed(&ident.to_string(), rename_all.as_deref()));
        all.push(Field {
            key,
            field,
            file: found.file,
        });
    }
    Ok(all)
}

/// One key.
struct Field<'a> {
    /// Its name in the file.
    key: String,
    /// Its declaration.
    field: &'a syn::Field,
    /// The file that declares it.
    file: &'a Path,
}

fn field_row(
    sources: &Sources,
    owner: &Found<'_, syn::ItemStruct>,
    field: Field<'_>,
    table: &Table,
    queue: &mut VecDeque<Table>,
) -> Result<Vec<String>> {
    let settings = serde_settings(&field.field.attrs);
    let shape = Shape::of(sources, &field.field.ty, field.file);
    let path = if table.path.is_empty() {
        field.key.clone()
    } else {
        format!("{}.{}", table.path, field.key)
    };
    let kind = match &shape.table {
        Some((name, layout)) => {
            let heading = layout.heading(&path);
            queue.push_back(Table {
                name: name.clone(),
                near: field.file.to_owned(),
                heading: heading.clone(),
                path: layout.path(&path),
            });
            format!(
                "{}, see [{}](#{})",
                layout.noun(),
                code(&heading),
                anchor(&heading)
            )
        }
        None => shape.leaf.clone(),
    };
    let default = if let Some(function) = serde_value(&settings, "default") {
        evaluate(sources, &function, owner.file)?
    } else if serde_flag(&settings, "default") {
        shape.empty.clone()
    } else if shape.optional {
        "none".to_owned()
    } else {
        "required".to_owned()
    };
    Ok(vec![
        code(&field.key),
        kind,
        default,
        one_line(&doc(&field.field.attrs)),
    ])
}

/// The id mdBook gives a heading: lowercase letters, digits, `-` and `_`,
/// spaces as `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .chars()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_mdbooks() {
        assert_eq!(anchor("`[[health.commands]]`"), "healthcommands");
        assert_eq!(anchor("Top-level keys"), "top-level-keys");
    }
}
