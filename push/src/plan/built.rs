//! What push reads of a system it built, for a plan to compare with what a
//! host runs: its closure with every path's unpacked size, its boot links
//! and its switch inhibitors. One shell script, run here or (with a build
//! host, where the system is) over SSH, with classic Nix commands only.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_command::{self as command, Invocation};
use deployd_protocol::plan::{BootLinks, ClosurePath, MAX_INHIBITORS_BYTES};
use deployd_protocol::StorePath;

use crate::nix::{on_build_host, NIX_TIMEOUT};

/// What a built system is, as a plan compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltSystem {
    /// Every path of its closure with its NAR size, sorted by path.
    pub closure: Vec<ClosurePath>,
    /// Its `kernel`, `initrd` and `kernel-modules` links.
    pub boot_links: BootLinks,
    /// Its `switch-inhibitors` file, when it has one.
    pub switch_inhibitors: Option<String>,
}

/// Reads `system` where it was built: here, or on `build_host`.
pub async fn read(system: &StorePath, build_host: Option<&str>) -> Result<BuiltSystem> {
    let script = script(system);
    let invocation = match build_host {
        Some(build_host) => on_build_host(build_host, &script),
        None => Invocation::new("sh", ["-c", script.as_str()], NIX_TIMEOUT),
    };
    let output = command::run(&invocation, |_| {})
        .await
        .with_context(|| format!("reading the built system {system}"))?;
    parse(&output.stdout).with_context(|| format!("reading the built system {system}"))
}

/// The script that prints `system`'s boot links (`link NAME TARGET`), its
/// switch inhibitors (`inhibitors BASE64`), its closure (`path PATH`) and
/// then each path's size in the same order (`size BYTES`). A store path
/// checks itself: no quote can occur in it.
fn script(system: &StorePath) -> String {
    format!(
        "set -e; s='{system}'; \
         for l in kernel initrd kernel-modules; do \
         if [ -L \"$s/$l\" ]; then echo \"link $l $(readlink \"$s/$l\")\"; fi; done; \
         if [ -f \"$s/switch-inhibitors\" ]; then echo \"inhibitors $(base64 -w0 \"$s/switch-inhibitors\")\"; fi; \
         paths=$(nix-store --query --requisites \"$s\"); \
         for p in $paths; do echo \"path $p\"; done; \
         nix-store --query --size $paths | sed 's/^/size /'"
    )
}

/// Reads what [`script`] printed.
fn parse(printed: &str) -> Result<BuiltSystem> {
    let mut links = std::collections::BTreeMap::new();
    let mut switch_inhibitors = None;
    let mut paths = Vec::new();
    let mut sizes = Vec::new();
    for line in printed.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "link" => {
                let (name, target) = rest.split_once(' ').context("a link line without target")?;
                links.insert(name.to_owned(), target.to_owned());
            }
            "inhibitors" => {
                let bytes = STANDARD
                    .decode(rest.trim())
                    .context("the switch inhibitors are not base64")?;
                if bytes.len() <= MAX_INHIBITORS_BYTES {
                    switch_inhibitors = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            "path" => paths.push(rest.parse::<StorePath>()?),
            "size" => sizes.push(
                rest.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{rest:?} is not a size"))?,
            ),
            _ => {}
        }
    }
    if paths.is_empty() || paths.len() != sizes.len() {
        bail!(
            "nix-store listed {} paths and {} sizes",
            paths.len(),
            sizes.len()
        );
    }
    let mut closure: Vec<ClosurePath> = paths
        .into_iter()
        .zip(sizes)
        .map(|(path, nar_size)| ClosurePath { path, nar_size })
        .collect();
    closure.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    Ok(BuiltSystem {
        closure,
        boot_links: BootLinks::read(|name| links.get(name).cloned()),
        switch_inhibitors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x";
    const KERNEL: &str = "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-linux-6.1";

    #[test]
    fn reads_links_inhibitors_and_sizes() {
        let printed = format!(
            "link kernel {KERNEL}/bzImage\nlink initrd /nix/store/i/initrd\ninhibitors {}\npath {SYSTEM}\npath {KERNEL}\nsize 100\nsize 2000\n",
            STANDARD.encode("{\"dbus\":\"broker\"}")
        );
        let built = parse(&printed).expect("parse");
        assert_eq!(
            built.boot_links.kernel.as_deref(),
            Some(format!("{KERNEL}/bzImage").as_str())
        );
        assert_eq!(built.boot_links.kernel_modules, None);
        assert_eq!(
            built.switch_inhibitors.as_deref(),
            Some("{\"dbus\":\"broker\"}")
        );
        assert_eq!(built.closure.len(), 2);
        assert_eq!(built.closure[0].path.as_str(), SYSTEM);
        assert_eq!(built.closure[0].nar_size, 100);
    }

    #[test]
    fn sizes_must_match_paths() {
        assert!(parse(&format!("path {SYSTEM}\n")).is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn the_script_quotes_the_path() {
        let system: StorePath = SYSTEM.parse().expect("path");
        assert!(script(&system).starts_with(&format!("set -e; s='{SYSTEM}';")));
    }
}
