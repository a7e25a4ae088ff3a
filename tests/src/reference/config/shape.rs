//! A config field's type as TOML sees it: a table (`[name]`), an array of
//! tables (`[[name]]`), tables by name (`[name.NAME]`), or a value whose
//! type is said in words (`string (path)`, `array of string`, the strings
//! an enum takes).

use std::path::Path;

use super::super::markdown::code;
use super::super::source::{renamed, serde_flag, serde_settings, serde_value, type_text, Sources};

/// How a table is written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[name]`.
    Single,
    /// `[[name]]`, repeated.
    Array,
    /// `[name.KEY]`, one per key.
    Map,
}

impl Layout {
    pub fn heading(self, path: &str) -> String {
        match self {
            Layout::Single => format!("[{path}]"),
            Layout::Array => format!("[[{path}]]"),
            Layout::Map => format!("[{path}.NAME]"),
        }
    }

    pub fn path(self, path: &str) -> String {
        match self {
            Layout::Single | Layout::Array => path.to_owned(),
            Layout::Map => format!("{path}.NAME"),
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Layout::Single => "table",
            Layout::Array => "array of tables",
            Layout::Map => "tables by name",
        }
    }
}

/// What a field's type is in TOML.
pub struct Shape {
    /// `Option<..>`: it may be left out.
    pub optional: bool,
    /// The struct of the table(s) it is, and how they are written.
    pub table: Option<(String, Layout)>,
    /// Otherwise its TOML type, in words.
    pub leaf: String,
    /// Its value under a plain `#[serde(default)]`.
    pub empty: String,
}

impl Shape {
    pub fn of(sources: &Sources, kind: &syn::Type, near: &Path) -> Shape {
        let (outer, inner) = split_generic(kind);
        let optional = outer == "Option";
        let (outer, inner) = match (optional, inner.first()) {
            (true, Some(inside)) => split_generic(inside),
            _ => (outer, inner),
        };
        let table_of = |kind: &syn::Type| {
            let name = last_segment(kind)?;
            if known_leaf(&name).is_some() {
                return None;
            }
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

pub fn last_segment(kind: &syn::Type) -> Option<String> {
    match kind {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string()),
        _ => None,
    }
}

/// The TOML type of a type the config reads with its own serde code.
fn known_leaf(type_name: &str) -> Option<&'static str> {
    match type_name {
        "String" | "str" => Some("string"),
        "PathBuf" | "Path" => Some("string (path)"),
        "bool" => Some("boolean"),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Some("integer"),
        "SocketAddr" => Some("string (address:port)"),
        "HostName" => Some("string (host name)"),
        "PublicKey" => Some("string (public key, `NAME:BASE64`)"),
        "Permissions" => Some("array of string"),
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
    if let Some(known) = known_leaf(&outer) {
        return known.to_owned();
    }
    if let Some(found) = sources.enum_named(&outer, Some(near)) {
        // `#[serde(try_from = "String")]`: read from a string, whatever its
        // variants hold once parsed.
        if serde_value(&serde_settings(&found.item.attrs), "try_from").as_deref() == Some("String")
        {
            return "string".to_owned();
        }
        // `#[serde(untagged)]`, each variant holding one value: any of them.
        let untagged: Option<Vec<String>> =
            serde_flag(&serde_settings(&found.item.attrs), "untagged")
                .then(|| {
                    found
                        .item
                        .variants
                        .iter()
                        .map(|variant| match &variant.fields {
                            syn::Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                                Some(leaf(sources, &fields.unnamed[0].ty, near))
                            }
                            _ => None,
                        })
                        .collect()
                })
                .flatten();
        if let Some(kinds) = untagged {
            return kinds.join(" or ");
        }
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
