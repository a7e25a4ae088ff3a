//! The error codes' page: the HTTP API's (`ErrorCode`, with the status
//! each answers with) and a failed deploy's own (`FailureCode`, in its
//! record), from their enums. Variants and their doc comments are read
//! from the source, so a new variant is on the page once it is
//! regenerated; each wire name is parsed back into the real enum, and the
//! status is the one `ErrorCode::http_status` gives.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use deployd_protocol::{ErrorCode, FailureCode};

use super::markdown::{code, one_line, table};
use super::source::{doc, renamed, serde_settings, serde_value, Sources};

/// The page.
pub fn page(root: &Path) -> Result<String> {
    let sources = Sources::read(root, &["protocol/src"])?;
    let mut text = String::from("# Error codes\n\n");
    let body = sources
        .struct_named("ErrorBody", Some(Path::new("protocol/src/error.rs")))
        .context("no struct ErrorBody")?;
    text.push_str("## HTTP answers\n\n");
    text.push_str(&format!("{}\n\n", one_line(&doc(&body.item.attrs))));
    let mut rows = Vec::new();
    for (name, description) in variants(&sources, "ErrorCode", "protocol/src/error.rs")? {
        let parsed: ErrorCode = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("{name} is not an ErrorCode"))?;
        ensure!(
            parsed.as_str() == name,
            "ErrorCode::as_str disagrees with serde on {name}"
        );
        rows.push(vec![
            code(&name),
            parsed.http_status().to_string(),
            description,
        ]);
    }
    text.push_str(&table(&["Code", "Status", "Meaning"], &rows));

    let failure = sources
        .enum_named("FailureCode", Some(Path::new("protocol/src/failure.rs")))
        .context("no enum FailureCode")?;
    text.push_str("\n## A deploy's own codes\n\n");
    text.push_str(&format!("{}\n\n", one_line(&doc(&failure.item.attrs))));
    let mut rows = Vec::new();
    for (name, description) in variants(&sources, "FailureCode", "protocol/src/failure.rs")? {
        let parsed: FailureCode = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("{name} is not a FailureCode"))?;
        ensure!(
            parsed.as_str() == name,
            "FailureCode::as_str disagrees with serde on {name}"
        );
        rows.push(vec![code(&name), description]);
    }
    text.push_str(&table(&["Code", "Meaning"], &rows));
    Ok(text)
}

/// An enum's variants: their wire names (serde's) and doc comments.
fn variants(sources: &Sources, name: &str, file: &str) -> Result<Vec<(String, String)>> {
    let found = sources
        .enum_named(name, Some(Path::new(file)))
        .with_context(|| format!("no enum {name} in {file}"))?;
    let rename_all = serde_value(&serde_settings(&found.item.attrs), "rename_all");
    Ok(found
        .item
        .variants
        .iter()
        .map(|variant| {
            let wire = serde_value(&serde_settings(&variant.attrs), "rename")
                .unwrap_or_else(|| renamed(&variant.ident.to_string(), rename_all.as_deref()));
            (wire, one_line(&doc(&variant.attrs)))
        })
        .collect())
}
