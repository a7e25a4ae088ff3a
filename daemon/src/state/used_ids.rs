//! The deploy ids used here, newest last, in `state_dir/deploy-ids`: one id
//! a line, appended (and synced) as each deploy is accepted, so that a
//! reused id is refused (`replayed`) even after its record left the history.
//!
//! The list is bounded: the most recent ids are kept and the oldest are
//! forgotten. The file is appended to until it holds twice the bound, then
//! rewritten whole with the newest ids only (temporary file, fsync, rename,
//! fsync of the directory), so it never grows past twice the bound and a
//! crash at any moment leaves either the old list or the new one.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::{write_atomically, StateError};

/// How many of the most recent deploy ids are remembered (at least).
///
/// A reused id is refused only so that an id names one deploy: its status
/// URL (`/v1/deploys/<id>`) and its events must not start answering for
/// another deploy while someone may still follow it. Replays are stopped by
/// the nonces and the 15-minute validity window, not by this list. So an id
/// only has to stay refused while the host still reports its deploy (the
/// history limit, 100 by default; the bound is raised to it when it is
/// larger) and for a good margin after: 10 000 deploys is years of a busy
/// host's deploys, long after any client stopped following one. The file
/// holds at most twice as many lines (about 1.3 MB with 64-byte ids).
pub const KEPT_DEPLOY_IDS: usize = 10_000;

/// The most recent deploy ids, in memory and on disk.
#[derive(Debug)]
pub struct UsedIds {
    file: PathBuf,
    /// How many ids are kept.
    kept: usize,
    /// The kept ids, oldest first (the oldest is forgotten first).
    order: VecDeque<String>,
    /// The same ids, to look one up.
    ids: HashSet<String>,
    /// The lines in the file, to know when to compact it.
    file_lines: usize,
}

impl UsedIds {
    /// Reads `file` (missing: no id used yet), keeping its last `kept` ids.
    /// A last line that a crash cut short is dropped, and the file rewritten
    /// without it, so the next append starts a line of its own.
    pub fn load(file: &Path, kept: usize) -> Result<Self, StateError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(StateError::Io {
                    action: "reading",
                    path: file.to_owned(),
                    source,
                })
            }
        };
        let lines: Vec<&str> = whole_lines(file, &text)?.lines().collect();
        let mut used = UsedIds {
            file: file.to_owned(),
            kept: kept.max(1),
            order: VecDeque::new(),
            ids: HashSet::new(),
            file_lines: lines.len(),
        };
        let newest = lines.len().saturating_sub(used.kept);
        for id in &lines[newest..] {
            used.keep(id);
        }
        Ok(used)
    }

    /// Whether `id` is among the kept ids.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Adds `id` in memory only (an id a kept record has, should the file
    /// have lost it).
    pub fn remember_in_memory(&mut self, id: &str) {
        if !self.contains(id) {
            self.keep(id);
        }
    }

    /// Appends `id` to the file (synced: a crash must not forget it), then
    /// keeps it; compacts the file once it holds twice the bound. A failed
    /// compaction is logged, not returned: the id is already on disk, and the
    /// next append tries again.
    pub fn remember(&mut self, id: &str) -> Result<(), StateError> {
        use std::io::Write;
        let io = |source| StateError::Io {
            action: "appending to",
            path: self.file.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(io)?;
        writeln!(file, "{id}")
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        self.file_lines += 1;
        self.keep(id);
        if self.file_lines > 2 * self.kept {
            if let Err(error) = self.compact() {
                log::warn!("cannot compact the used deploy ids: {error:#?}");
            }
        }
        Ok(())
    }

    /// Keeps `id` as the newest, forgetting the oldest beyond the bound.
    fn keep(&mut self, id: &str) {
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        while self.order.len() > self.kept {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    /// Rewrites the file with the kept ids only, oldest first.
    fn compact(&mut self) -> Result<(), StateError> {
        let mut text = String::new();
        for id in &self.order {
            text.push_str(id);
            text.push('\n');
        }
        write_atomically(&self.file, text.as_bytes())?;
        self.file_lines = self.order.len();
        Ok(())
    }
}

/// `text` (of the append-only `file`) without a last line that a crash cut
/// short; the file is rewritten without it, so the next append starts a
/// line of its own instead of joining two ids.
fn whole_lines<'a>(file: &Path, text: &'a str) -> Result<&'a str, StateError> {
    if text.is_empty() || text.ends_with('\n') {
        return Ok(text);
    }
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    write_atomically(file, whole.as_bytes())?;
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(file: &Path) -> Vec<String> {
        std::fs::read_to_string(file)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_file_stays_bounded_across_many_inserts_and_reloads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("deploy-ids");
        let kept = 5;
        let mut used = UsedIds::load(&file, kept).expect("load");
        for n in 0..100usize {
            used.remember(&format!("d{n}")).expect("remember");
            assert!(lines(&file).len() <= 2 * kept, "after d{n}");
            if n % 7 == 0 {
                used = UsedIds::load(&file, kept).expect("reload");
            }
            // The newest ids stay refused, the oldest beyond the bound are forgotten.
            let first_kept = (n + 1).saturating_sub(kept);
            for old in 0..=n {
                let id = format!("d{old}");
                assert_eq!(used.contains(&id), old >= first_kept, "{id} after d{n}");
            }
        }
        let reloaded = UsedIds::load(&file, kept).expect("reload");
        assert!((95..100).all(|n| reloaded.contains(&format!("d{n}"))));
        assert!(!reloaded.contains("d94"));
        // Oldest first, in the order they came.
        let on_disk = lines(&file);
        assert!(on_disk.len() <= 2 * kept);
        let numbers: Vec<u32> = on_disk
            .iter()
            .map(|id| id[1..].parse().expect("number"))
            .collect();
        assert!(numbers.windows(2).all(|pair| pair[0] + 1 == pair[1]));
        assert_eq!(numbers.last(), Some(&99));
    }

    #[test]
    fn compaction_keeps_the_newest_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("deploy-ids");
        let mut used = UsedIds::load(&file, 3).expect("load");
        for id in ["a", "b", "c", "d", "e", "f"] {
            used.remember(id).expect("remember");
        }
        assert_eq!(lines(&file), ["a", "b", "c", "d", "e", "f"]);
        used.remember("g").expect("remember");
        assert_eq!(lines(&file), ["e", "f", "g"]);
        assert!(!dir.path().join("deploy-ids.tmp").exists());
    }

    #[test]
    fn an_interrupted_compaction_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("deploy-ids");
        // Killed while writing the compacted list: the old file is whole,
        // a torn temporary file lies beside it.
        std::fs::write(&file, "a\nb\nc\nd\ne\nf\ng\n").expect("write");
        std::fs::write(dir.path().join("deploy-ids.tmp"), "e\nf").expect("write");
        let mut used = UsedIds::load(&file, 3).expect("load");
        assert!(used.contains("e") && used.contains("f") && used.contains("g"));
        assert!(!used.contains("d"));
        // The next compaction replaces the leftover.
        used.remember("h").expect("remember");
        assert_eq!(lines(&file), ["f", "g", "h"]);
        assert!(!dir.path().join("deploy-ids.tmp").exists());
        let reloaded = UsedIds::load(&file, 3).expect("reload");
        assert!(reloaded.contains("h") && !reloaded.contains("e"));
    }

    #[test]
    fn an_old_unbounded_file_is_compacted_at_the_next_append() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("deploy-ids");
        let old: String = (0..50).map(|n| format!("d{n}\n")).collect();
        std::fs::write(&file, old).expect("write");
        let mut used = UsedIds::load(&file, 4).expect("load");
        assert!(used.contains("d49") && used.contains("d46") && !used.contains("d45"));
        used.remember("new").expect("remember");
        assert_eq!(lines(&file), ["d47", "d48", "d49", "new"]);
    }
}
