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

/// The page.
pub fn page(root: &Path) -> Result<String> {
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "tests/module-options.nix"])
        .args(["--arg", "module", "./nixos-module/default.nix"])
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
    let options: Vec<ModuleOption> =
        serde_json::from_slice(&output.stdout).context("the evaluation's JSON")?;
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
