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

use anyhow::{bail, Context, Result};

use super::markdown::{code, one_line, table};
use super::source::{
    doc, renamed, serde_flag, serde_settings, serde_value, type_text, Found, Sources,
};

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

/// How a table is written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[name]`.
    Single,
    /// `[[name]]`, repeated.
    Array,
    /// `[name.KEY]`, one per key.
    Map,
}

impl Layout {
    fn heading(self, path: &str) -> String {
        match self {
            Layout::Single => format!("[{path}]"),
            Layout::Array => format!("[[{path}]]"),
            Layout::Map => format!("[{path}.NAME]"),
        }
    }

    fn path(self, path: &str) -> String {
        match self {
            Layout::Single | Layout::Array => path.to_owned(),
            Layout::Map => format!("{path}.NAME"),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Layout::Single => "table",
            Layout::Array => "array of tables",
            Layout::Map => "tables by name",
        }
    }
}

/// What a field's type is in TOML.
struct Shape {
    /// `Option<..>`: it may be left out.
    optional: bool,
    /// The struct of the table(s) it is, and how they are written.
    table: Option<(String, Layout)>,
    /// Otherwise its TOML type, in words.
    leaf: String,
    /// Its value under a plain `#[serde(default)]`.
    empty: String,
}

impl Shape {
    fn of(sources: &Sources, kind: &syn::Type, near: &Path) -> Shape {
        let (outer, inner) = split_generic(kind);
        let optional = outer == "Option";
        let (outer, inner) = match (optional, inner.first()) {
            (true, Some(inside)) => split_generic(inside),
            _ => (outer, inner),
        };
        let table_of = |kind: &syn::Type| {
            let name = last_segment(kind)?;
            let found = sources.struct_named(&name, Some(near))?;
            let named = matches!(found.item.fields, syn::Fields::Named(_));
            let converted = serde_value(&serde_settings(&found.item.attrs), "try_from").is_some()
                || serde_value(&serde_settings(&found.item.attrs), "from").is_some();
            (named && !converted).then_some(name)
        };
        let (table, empty) = match (outer.as_str(), inner.as_slice()) {
            ("Vec", [element]) => (table_of(element).map(|name| (name, Layout::Array)), "`[]`"),
            ("BTreeMap" | "HashMap", [_, value]) => {
                (table_of(value).map(|name| (name, Layout::Map)), "`{}`")
            }
            _ => (
                table_of(kind_or_inner(kind, optional)).map(|name| (name, Layout::Single)),
                "",
            ),
        };
        let leaf = leaf(sources, kind_or_inner(kind, optional), near);
        let empty = if optional {
            "none".to_owned()
        } else if !empty.is_empty() {
            empty.to_owned()
        } else if table.is_some() {
            "its keys' defaults".to_owned()
        } else {
            empty_leaf(&leaf)
        };
        Shape {
            optional,
            table,
            leaf,
            empty,
        }
    }
}

/// `Option<T>`'s `T`, or the type itself.
fn kind_or_inner(kind: &syn::Type, optional: bool) -> &syn::Type {
    if optional {
        split_generic(kind).1.first().copied().unwrap_or(kind)
    } else {
        kind
    }
}

/// A type's last path segment's name and its type arguments.
fn split_generic(kind: &syn::Type) -> (String, Vec<&syn::Type>) {
    let syn::Type::Path(path) = kind else {
        return (type_text(kind), Vec::new());
    };
    let Some(segment) = path.path.segments.last() else {
        return (type_text(kind), Vec::new());
    };
    let arguments = match &segment.arguments {
        syn::PathArguments::AngleBracketed(arguments) => arguments
            .args
            .iter()
            .filter_map(|argument| match argument {
                syn::GenericArgument::Type(inner) => Some(inner),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (segment.ident.to_string(), arguments)
}

fn last_segment(kind: &syn::Type) -> Option<String> {
    match kind {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string()),
        _ => None,
    }
}

/// A value's TOML type, in words.
fn leaf(sources: &Sources, kind: &syn::Type, near: &Path) -> String {
    let (outer, inner) = split_generic(kind);
    match (outer.as_str(), inner.as_slice()) {
        ("Vec", [element]) => return format!("array of {}", leaf(sources, element, near)),
        ("BTreeMap" | "HashMap", [_, value]) => {
            return format!("table of {}", leaf(sources, value, near))
        }
        _ => {}
    }
    let known = match outer.as_str() {
        "String" | "str" => Some("string"),
        "PathBuf" | "Path" => Some("string (path)"),
        "bool" => Some("boolean"),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Some("integer"),
        "SocketAddr" => Some("string (address:port)"),
        "HostName" => Some("string (host name)"),
        "Permissions" => Some("array of string"),
        _ => None,
    };
    if let Some(known) = known {
        return known.to_owned();
    }
    if let Some(found) = sources.enum_named(&outer, Some(near)) {
        let rename_all = serde_value(&serde_settings(&found.item.attrs), "rename_all");
        let values: Vec<String> = found
            .item
            .variants
            .iter()
            .map(|variant| {
                serde_value(&serde_settings(&variant.attrs), "rename")
                    .unwrap_or_else(|| renamed(&variant.ident.to_string(), rename_all.as_deref()))
            })
            .map(|value| code(&format!("\"{value}\"")))
            .collect();
        return format!("string: {}", values.join(", "));
    }
    if let Some(found) = sources.struct_named(&outer, Some(near)) {
        let settings = serde_settings(&found.item.attrs);
        if let Some(from) = serde_value(&settings, "try_from").or(serde_value(&settings, "from")) {
            if let Ok(parsed) = syn::parse_str::<syn::Type>(&from) {
                return leaf(sources, &parsed, near);
            }
        }
    }
    code(&type_text(kind))
}

/// A leaf's value under `#[serde(default)]`.
fn empty_leaf(leaf: &str) -> String {
    match leaf {
        "boolean" => "`false`",
        "integer" => "`0`",
        "string" => "`\"\"`",
        leaf if leaf.starts_with("array") => "`[]`",
        _ => "its type's default",
    }
    .to_owned()
}

/// What the `default = "function"` gives, as TOML (or as its doc comment says).
fn evaluate(sources: &Sources, function: &str, near: &Path) -> Result<String> {
    let name = function.rsplit("::").next().unwrap_or(function);
    let found = sources
        .function_named(name, Some(near))
        .with_context(|| format!("no fn {function}, the default of a config key"))?;
    let body = match found.item.block.stmts.as_slice() {
        [syn::Stmt::Expr(expression, None)] => value(sources, expression, found.file),
        _ => None,
    };
    if let Some(value) = body {
        return Ok(code(&value));
    }
    let said = one_line(&doc(&found.item.attrs));
    if said.is_empty() {
        bail!(
            "cannot show the value fn {name} ({}) returns: give it a doc comment that says it",
            found.file.display()
        );
    }
    Ok(said)
}

/// A plain value's TOML text: a literal, `PathBuf::from("..")`,
/// `"..".to_owned()`, an enum variant.
fn value(sources: &Sources, expression: &syn::Expr, near: &Path) -> Option<String> {
    match expression {
        syn::Expr::Lit(literal) => match &literal.lit {
            syn::Lit::Str(text) => Some(format!("\"{}\"", text.value())),
            syn::Lit::Int(number) => Some(number.base10_digits().to_owned()),
            syn::Lit::Bool(truth) => Some(truth.value.to_string()),
            _ => None,
        },
        syn::Expr::Call(call) if call.args.len() == 1 => {
            let syn::Expr::Path(function) = call.func.as_ref() else {
                return None;
            };
            let last = function.path.segments.last()?.ident.to_string();
            let argument = value(sources, call.args.first()?, near)?;
            (last == "from" && argument.starts_with('"')).then_some(argument)
        }
        syn::Expr::MethodCall(call) if call.args.is_empty() => {
            let receiver = value(sources, &call.receiver, near)?;
            let method = call.method.to_string();
            let converts = matches!(method.as_str(), "to_owned" | "to_string" | "into");
            (converts && receiver.starts_with('"')).then_some(receiver)
        }
        syn::Expr::Path(path) if path.path.segments.len() == 2 => {
            let enum_name = path.path.segments.first()?.ident.to_string();
            let variant_name = path.path.segments.last()?.ident.to_string();
            let found = sources.enum_named(&enum_name, Some(near))?;
            let rename_all = serde_value(&serde_settings(&found.item.attrs), "rename_all");
            let variant = found
                .item
                .variants
                .iter()
                .find(|v| v.ident == variant_name)?;
            let name = serde_value(&serde_settings(&variant.attrs), "rename")
                .unwrap_or_else(|| renamed(&variant_name, rename_all.as_deref()));
            Some(format!("\"{name}\""))
        }
        _ => None,
    }
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
    fn plain_defaults_are_evaluated() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dir = root.path().join("src");
        std::fs::create_dir(&dir).expect("a folder");
        std::fs::write(
            dir.join("lib.rs"),
            r#"
            enum Action { Switch, DryActivate }
            fn port() -> u16 { 9797 }
            fn dir() -> PathBuf { PathBuf::from("/var/lib/x") }
            fn unit() -> String { "x.service".to_owned() }
            fn action() -> Action { Action::DryActivate }
            /// `"[::]:9797"`: every address.
            fn listen() -> SocketAddr { SocketAddr::from(([0u16; 8], 9797)) }
            fn unsaid() -> SocketAddr { SocketAddr::from(([0u16; 8], 9797)) }
            "#
            .replace(
                "enum Action",
                "#[serde(rename_all = \"kebab-case\")] enum Action",
            ),
        )
        .expect("written");
        let sources = Sources::read(root.path(), &["src"]).expect("read");
        let near = Path::new("src/lib.rs");
        let shown = |name: &str| evaluate(&sources, name, near).expect("shown");
        assert_eq!(shown("port"), "`9797`");
        assert_eq!(shown("dir"), "`\"/var/lib/x\"`");
        assert_eq!(shown("unit"), "`\"x.service\"`");
        assert_eq!(shown("action"), "`\"dry-activate\"`");
        assert_eq!(shown("listen"), "`\"[::]:9797\"`: every address.");
        let error = evaluate(&sources, "unsaid", near).expect_err("not shown");
        assert!(
            error.to_string().contains("give it a doc comment"),
            "{error}"
        );
    }

    #[test]
    fn anchors_are_mdbooks() {
        assert_eq!(anchor("`[[health.commands]]`"), "healthcommands");
        assert_eq!(anchor("Top-level keys"), "top-level-keys");
    }
}
