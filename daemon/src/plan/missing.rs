//! The paths of a system's closure this host lacks and their size, as a
//! fetch would find them: Nix's own `nix-store --realise --dry-run` with
//! exactly a fetch's options ([`crate::pipeline::nix::realise_dry_run`]),
//! whose summary (Nix `src/libmain/shared.cc`, `printMissing`) is read here.
//! Everything a plan knows of the caches goes through [`of`], one function
//! to replace when the host reads the narinfos itself.

use deployd_command as command;
use deployd_protocol::plan::MissingPaths;
use deployd_protocol::StorePath;

use super::PlanError;
use crate::config::Config;
use crate::pipeline::nix::realise_dry_run;

/// The most lines of Nix's answer read (a path a line: far more than any
/// system's closure).
const MAX_LINES: usize = 200_000;

/// What fetching `system` would download here.
pub async fn of(config: &Config, system: &StorePath) -> Result<MissingPaths, PlanError> {
    let mut lines = Vec::new();
    command::run(&realise_dry_run(config, system), |line| {
        if lines.len() < MAX_LINES {
            lines.push(line.to_owned());
        }
    })
    .await?;
    parse_missing(&lines)
}

/// Which list of `printMissing` a path line belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Not inside a list.
    None,
    /// "these N paths will be fetched (...)".
    Fetched,
    /// "don't know how to build these paths" (or, never for a system sent
    /// from a cache, "will be built"): a fetch would fail on them.
    Unavailable,
}

/// Reads Nix 2.8's `printMissing` (the same in later Nix):
///
/// ```text
/// these 3 paths will be fetched (0.05 MiB download, 0.21 MiB unpacked):
///   /nix/store/...-a
/// this path will be fetched (0.01 MiB download, 0.02 MiB unpacked):
/// these 2 derivations will be built:
/// don't know how to build these paths:
/// ```
///
/// (`%.2f` MiB: the byte counts are as precise as that.) Other lines
/// (warnings) end a list. Nothing printed: nothing is missing.
pub fn parse_missing(lines: &[String]) -> Result<MissingPaths, PlanError> {
    let mut missing = MissingPaths::default();
    let mut section = Section::None;
    let mut announced = 0usize;
    for line in lines {
        if let Some(path) = line.strip_prefix("  ") {
            if section == Section::None || !path.starts_with('/') {
                section = Section::None;
                continue;
            }
            let path: StorePath = path.trim().parse()?;
            match section {
                Section::Fetched => missing.paths.push(path),
                Section::Unavailable => missing.unavailable.push(path),
                Section::None => {}
            }
            continue;
        }
        section = Section::None;
        if let Some((count, download, unpacked)) = fetched_header(line) {
            section = Section::Fetched;
            announced += count;
            missing.download_bytes += download;
            missing.unpacked_bytes += unpacked;
        } else if line.starts_with("don't know how to build these paths")
            || (line.ends_with(" will be built:")
                && (line.starts_with("this derivation") || line.starts_with("these ")))
        {
            section = Section::Unavailable;
        }
    }
    if announced != missing.paths.len() {
        return Err(PlanError::Unreadable(format!(
            "Nix announced {announced} paths to fetch and listed {}",
            missing.paths.len()
        )));
    }
    missing.paths.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    missing
        .unavailable
        .sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(missing)
}

/// "these N paths will be fetched (X MiB download, Y MiB unpacked):" (or
/// "this path ...") as N, X and Y in bytes.
fn fetched_header(line: &str) -> Option<(usize, u64, u64)> {
    let (head, sizes) = line.split_once(" will be fetched (")?;
    let count = match head {
        "this path" => 1,
        _ => head
            .strip_prefix("these ")?
            .strip_suffix(" paths")?
            .parse()
            .ok()?,
    };
    let sizes = sizes.strip_suffix(" MiB unpacked):")?;
    let (download, unpacked) = sizes.split_once(" MiB download, ")?;
    Some((count, mebibytes(download)?, mebibytes(unpacked)?))
}

/// `X` (MiB, as `%.2f` prints it) in bytes.
fn mebibytes(text: &str) -> Option<u64> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * 1024.0 * 1024.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    const A: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-hello-2.12";
    const B: &str = "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x";

    #[test]
    fn reads_the_paths_and_sizes_nix_prints() {
        let printed = format!(
            "these 2 paths will be fetched (1.50 MiB download, 4.00 MiB unpacked):\n  {B}\n  {A}\n"
        );
        let missing = parse_missing(&lines(&printed)).expect("parse");
        assert_eq!(missing.paths.len(), 2);
        assert_eq!(missing.paths[0].as_str(), A);
        assert_eq!(missing.download_bytes, 1_572_864);
        assert_eq!(missing.unpacked_bytes, 4 * 1024 * 1024);
        assert!(missing.unavailable.is_empty());
    }

    #[test]
    fn one_path_unavailable_paths_and_warnings() {
        let printed = format!(
            "warning: ignoring untrusted substituter 'x'\nthis path will be fetched (0.01 MiB download, 0.02 MiB unpacked):\n  {A}\ndon't know how to build these paths:\n  {B}\nwarning: something else\n"
        );
        let missing = parse_missing(&lines(&printed)).expect("parse");
        assert_eq!(missing.paths.len(), 1);
        assert_eq!(missing.unavailable.len(), 1);
        assert_eq!(missing.unavailable[0].as_str(), B);
        assert_eq!(missing.download_bytes, 10_486);
    }

    #[test]
    fn nothing_printed_is_nothing_missing() {
        assert_eq!(parse_missing(&[]).expect("parse"), MissingPaths::default());
    }

    #[test]
    fn a_count_that_disagrees_is_an_error() {
        let printed = format!(
            "these 3 paths will be fetched (1.00 MiB download, 1.00 MiB unpacked):\n  {A}\n"
        );
        assert!(parse_missing(&lines(&printed)).is_err());
        let bad = "these 1 paths will be fetched (1.00 MiB download, 1.00 MiB unpacked):\n  /etc/passwd\n";
        assert!(parse_missing(&lines(bad)).is_err());
    }
}
