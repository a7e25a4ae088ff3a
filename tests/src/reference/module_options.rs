//! The NixOS module's options, by evaluating the module with real Nix:
//! `tests/module-options.nix` calls `nixos-module/default.nix` (and what it
//! imports) with a stand-in for nixpkgs' `lib` and returns every documented
//! option's name, type, default, example and description as JSON.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::markdown::code;

/// One option, as the evaluation returns it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleOption {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    default: Option<String>,
    example: Option<String>,
    description: String,
    read_only: bool,
    declared_in: String,
}

/// The options `module` declares, evaluated by `tests/module-options.nix`.
fn evaluate(root: &Path, module: &Path) -> Result<Vec<ModuleOption>> {
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "tests/module-options.nix"])
        .arg("--arg")
        .arg("module")
        .arg(module)
        .current_dir(root)
        .output()
        .context("cannot run nix-instantiate (the module's options are read with Nix)")?;
    if !output.status.success() {
        bail!(
            "evaluating the module's options failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("the evaluation's JSON")
}

/// The page.
pub fn page(root: &Path) -> Result<String> {
    let options = evaluate(root, Path::new("./nixos-module/default.nix"))?;
    let mut text = String::from(
        "# NixOS module options\n\n\
         The options of `nixosModules.default` (`services.deployd`, and `services.deployd.forge` for the forge service), as the module declares them. `*` stands for each item of a list.\n",
    );
    for option in &options {
        text.push_str(&format!("\n## `{}`\n\n", option.name));
        text.push_str(&format!("{}\n\n", option.description.trim()));
        text.push_str(&format!("- Type: {}\n", option.kind));
        match &option.default {
            Some(default) => text.push_str(&format!("- Default: {}\n", code(default))),
            None => text.push_str("- Default: none, it must be set\n"),
        }
        if let Some(example) = &option.example {
            text.push_str(&format!("- Example: {}\n", code(example)));
        }
        if option.read_only {
            text.push_str("- Read-only\n");
        }
        text.push_str(&format!(
            "- Declared in: {}\n",
            code(&format!("nixos-module/{}", option.declared_in))
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository's root")
    }

    /// The options of a module written for the test.
    fn options_of(module: &str) -> Result<Vec<ModuleOption>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("module.nix");
        std::fs::write(&path, module).expect("written");
        evaluate(root(), &path)
    }

    /// The stand-in describes types as nixpkgs' `lib/types.nix` does
    /// (these are the descriptions nixpkgs gives them), names sub-options
    /// as its option docs do and leaves internal options out.
    #[test]
    fn the_stand_in_describes_types_as_nixpkgs() {
        let options = options_of(
            r#"{lib, ...}: let inherit (lib) mkOption types; in {
              options.x = {
                enable = lib.mkEnableOption "x";
                names = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "d"; };
                kinds = mkOption { type = types.listOf (types.enum ["a" "b"]); default = ["a"]; description = "d"; };
                wait = mkOption { type = types.either types.ints.positive types.str; default = 1; description = "d"; };
                port = mkOption { type = types.port; description = "d"; };
                hosts = mkOption {
                  type = types.attrsOf (types.submodule {options.size = mkOption { type = types.int; default = 0; description = "d"; };});
                  default = {};
                  defaultText = lib.literalExpression "{ }";
                  description = "d";
                };
                hidden = mkOption { type = types.str; internal = true; description = "d"; };
              };
            }"#,
        )
        .expect("evaluated");
        let described: Vec<(&str, &str, Option<&str>)> = options
            .iter()
            .map(|option| {
                (
                    option.name.as_str(),
                    option.kind.as_str(),
                    option.default.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            described,
            [
                ("x.enable", "boolean", Some("false")),
                ("x.hosts", "attribute set of (submodule)", Some("{ }")),
                ("x.hosts.<name>.size", "signed integer", Some("0")),
                (
                    "x.kinds",
                    "list of (one of \"a\", \"b\")",
                    Some("[ \"a\" ]")
                ),
                ("x.names", "null or (list of string)", Some("null")),
                (
                    "x.port",
                    "16 bit unsigned integer; between 0 and 65535 (both inclusive)",
                    None
                ),
                (
                    "x.wait",
                    "positive integer, meaning >0, or string",
                    Some("1")
                ),
            ]
        );
        assert_eq!(options[0].description, "Whether to enable x.");
        assert_eq!(options[0].example.as_deref(), Some("true"));
    }

    #[test]
    fn a_default_that_reads_the_config_needs_a_default_text() {
        let error = options_of(
            r#"{config, lib, ...}: {
              options.x.name = lib.mkOption { type = lib.types.str; default = config.networking.hostName; description = "d"; };
            }"#,
        )
        .expect_err("refused");
        assert!(
            error.to_string().contains("give it a `defaultText`"),
            "{error}"
        );
    }
}
