//! The value a `#[serde(default = "function")]` gives: evaluated when the
//! function's body is a plain value (`60`, `PathBuf::from("..")`,
//! `"..".to_owned()`, an enum variant), else what its doc comment says; a
//! function that does neither fails the page, so every default is shown.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::super::markdown::{code, one_line};
use super::super::source::{doc, renamed, serde_settings, serde_value, Sources};

/// What the `default = "function"` gives, as TOML (or as its doc comment says).
pub fn evaluate(sources: &Sources, function: &str, near: &Path) -> Result<String> {
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
}
