//! The shape of a closure as the cache tells it: its paths, its NAR bytes,
//! the bytes the cache sends for it (its compressed files), and its depth,
//! the longest chain of references from the system down, counted in paths.
//! A fetch that knows nothing beforehand needs at least one round trip per
//! level of that chain (a path's references are known only once its
//! narinfo came), which is why the depth is part of the latency figure's
//! floor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Longest narinfo read (the lab's are a few hundred bytes).
const MAX_NARINFO_BYTES: u64 = 64 * 1024;

/// A closure's size and depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosureShape {
    /// Store paths in it.
    pub paths: usize,
    /// Their NAR size, all together.
    pub nar_bytes: u64,
    /// The size of the files the cache sends for them (`FileSize`,
    /// compressed), all together.
    pub file_bytes: u64,
    /// The longest chain of references from the root, in paths (a path
    /// without references: 1).
    pub depth: usize,
}

/// What the closure walk needs of one narinfo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct NarInfo {
    /// The references' hash parts, the path's own left out.
    references: Vec<String>,
    nar_size: u64,
    file_size: u64,
}

/// The shape of `store_path`'s closure, from the narinfos in the cache
/// folder `cache`.
pub fn read(cache: &Path, store_path: &str) -> Result<ClosureShape> {
    let root = hash_part(store_path)?;
    let mut infos = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(hash) = pending.pop() {
        if infos.contains_key(&hash) {
            continue;
        }
        let file = cache.join(format!("{hash}.narinfo"));
        let text = read_bounded(&file)?;
        let info = parse(&hash, &text).with_context(|| format!("reading {}", file.display()))?;
        pending.extend(info.references.iter().cloned());
        infos.insert(hash, info);
    }
    shape(&root, &infos)
}

fn read_bounded(file: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .with_context(|| format!("opening {}", file.display()))?
        .take(MAX_NARINFO_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", file.display()))?;
    Ok(text)
}

/// The hash part of a store path or of a reference (`HASH-name`).
fn hash_part(path: &str) -> Result<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.split_once('-') {
        Some((hash, _)) if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(hash.to_owned())
        }
        _ => bail!("{path:?} is not a store path"),
    }
}

/// The fields of narinfo `text` (of the path whose hash part is `own`).
fn parse(own: &str, text: &str) -> Result<NarInfo> {
    let mut info = NarInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "References" => {
                for reference in value.split_whitespace() {
                    let hash = hash_part(reference)?;
                    if hash != own {
                        info.references.push(hash);
                    }
                }
            }
            "NarSize" => info.nar_size = value.trim().parse().context("NarSize")?,
            "FileSize" => info.file_size = value.trim().parse().context("FileSize")?,
            _ => {}
        }
    }
    if info.file_size == 0 {
        // An uncompressed cache may leave FileSize out: the NAR is the file.
        info.file_size = info.nar_size;
    }
    Ok(info)
}

/// Sums and the longest chain from `root`, over a closure known whole.
fn shape(root: &str, infos: &BTreeMap<String, NarInfo>) -> Result<ClosureShape> {
    let mut depths: BTreeMap<&str, usize> = BTreeMap::new();
    let mut on_path = BTreeSet::new();
    // Depth-first without recursion (closures hold thousands of paths):
    // a path's depth is known once every reference's is.
    let mut stack: Vec<(&str, bool)> = vec![(root, false)];
    while let Some((hash, references_done)) = stack.pop() {
        let info = infos
            .get(hash)
            .with_context(|| format!("no narinfo for {hash}"))?;
        if references_done {
            let deepest = info
                .references
                .iter()
                .map(|reference| depths.get(reference.as_str()).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            depths.insert(hash, deepest + 1);
            on_path.remove(hash);
            continue;
        }
        if depths.contains_key(hash) {
            continue;
        }
        if !on_path.insert(hash) {
            bail!("the references of {hash} form a cycle");
        }
        stack.push((hash, true));
        for reference in &info.references {
            if !depths.contains_key(reference.as_str()) {
                if on_path.contains(reference.as_str()) {
                    bail!("the references of {reference} form a cycle");
                }
                stack.push((reference, false));
            }
        }
    }
    Ok(ClosureShape {
        paths: infos.len(),
        nar_bytes: infos.values().map(|info| info.nar_size).sum(),
        file_bytes: infos.values().map(|info| info.file_size).sum(),
        depth: depths.get(root).copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(letter: char) -> String {
        std::iter::repeat_n(letter, 32).collect()
    }

    fn narinfo(own: char, references: &[char], size: u64) -> String {
        let names: Vec<String> = references
            .iter()
            .map(|&letter| format!("{}-p{letter}", hash(letter)))
            .collect();
        format!(
            "StorePath: /nix/store/{}-p{own}\nURL: nar/x.nar.xz\nCompression: xz\n\
             FileSize: {}\nNarSize: {size}\nReferences: {}\nSig: k:x\n",
            hash(own),
            size + 1,
            names.join(" ")
        )
    }

    #[test]
    fn the_depth_is_the_longest_chain_and_self_references_do_not_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        // a -> b -> c -> d, a -> d, b -> b (itself), e unreferenced.
        for (own, references) in [
            ('a', &['b', 'd'][..]),
            ('b', &['b', 'c']),
            ('c', &['d']),
            ('d', &[]),
            ('e', &[]),
        ] {
            let file = dir.path().join(format!("{}.narinfo", hash(own)));
            std::fs::write(file, narinfo(own, references, 10)).expect("write");
        }
        let shape = read(dir.path(), &format!("/nix/store/{}-pa", hash('a'))).expect("shape");
        assert_eq!(
            shape,
            ClosureShape {
                paths: 4,
                nar_bytes: 40,
                file_bytes: 44,
                depth: 4
            }
        );
    }

    #[test]
    fn a_cycle_or_a_missing_narinfo_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (own, references) in [('a', &['b'][..]), ('b', &['a'])] {
            let file = dir.path().join(format!("{}.narinfo", hash(own)));
            std::fs::write(file, narinfo(own, references, 1)).expect("write");
        }
        let root = format!("/nix/store/{}-pa", hash('a'));
        assert!(read(dir.path(), &root).is_err());
        let missing = format!("/nix/store/{}-pz", hash('z'));
        assert!(read(dir.path(), &missing).is_err());
        assert!(read(dir.path(), "/nix/store/short-x").is_err());
    }
}
