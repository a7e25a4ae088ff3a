//! The book's reference pages (`docs/src/reference/*.md`) are what the code
//! generates: every page is generated again from the code (the binaries'
//! help, the config structs, the NixOS module evaluated with Nix, the error
//! enums, the routers) and compared with the committed one. With
//! `DEPLOYD_UPDATE_REFERENCE=1` (what `scripts/update-reference` sets) the
//! pages are written instead.
//!
//! It runs `push` and `deployd` from the target directory: `cargo test
//! --workspace` builds them first; `scripts/update-reference` does too.

use std::path::{Path, PathBuf};

use deployd_lab::reference::{
    generate, stale_pages, write_pages, Inputs, PAGES_DIR, UPDATE_COMMAND, UPDATE_VARIABLE,
};
use deployd_lab::sibling_binary;

fn inputs() -> Inputs {
    let lab = Path::new(env!("CARGO_BIN_EXE_lab"));
    let binary =
        |name: &str| sibling_binary(lab, name).expect("the workspace's binaries are built");
    Inputs {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository's root")
            .to_owned(),
        push: binary("push"),
        deployd: binary("deployd"),
    }
}

#[test]
fn reference_is_current() {
    let inputs = inputs();
    let pages = generate(&inputs).unwrap_or_else(|error| panic!("{error:#}"));
    if std::env::var_os(UPDATE_VARIABLE).is_some_and(|value| value == "1") {
        write_pages(&inputs.root, &pages).expect("the pages are written");
        return;
    }
    let stale = stale_pages(&inputs.root, &pages);
    let lines: Vec<String> = stale
        .iter()
        .map(|page| match page.first_difference {
            Some(line) => format!("  {} differs from line {line}", page.path.display()),
            None => format!("  {} is missing", page.path.display()),
        })
        .collect();
    assert!(
        stale.is_empty(),
        "the reference pages in {PAGES_DIR} are not what the code generates:\n{}\nRegenerate them with `{UPDATE_COMMAND}` (or `{UPDATE_VARIABLE}=1 cargo test -p deployd-lab --test reference_is_current` after `cargo build --workspace`) and commit them.",
        lines.join("\n")
    );
}
