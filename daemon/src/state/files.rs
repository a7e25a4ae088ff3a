//! Crash-safe file writes: temporary file, fsync, rename, fsync directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::StateError;

/// Replaces `path` with `bytes` so that readers see the old or the new
/// content whole, whatever happens.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    };
    let temporary = path.with_extension("tmp");
    let written = File::create(&temporary)
        .map_err(io("creating", &temporary))
        .and_then(|mut file| {
            file.write_all(bytes).map_err(io("writing", &temporary))?;
            file.sync_all().map_err(io("syncing", &temporary))
        })
        .and_then(|()| std::fs::rename(&temporary, path).map_err(io("renaming", path)));
    if let Err(error) = written {
        // Leave nothing behind: a failed write changes nothing.
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("syncing", dir))?;
    }
    Ok(())
}

/// Writes `value` as JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_owned(),
        source,
    })?;
    write_atomically(path, &bytes)
}

/// Reads JSON from `path`; `None` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                action: "reading",
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Json {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        write_json(&path, &vec![1, 2, 3]).expect("write");
        write_json(&path, &vec![4]).expect("rewrite");
        assert_eq!(read_json::<Vec<u8>>(&path).expect("read"), Some(vec![4]));
        assert!(!dir.path().join("state.tmp").exists());
        assert_eq!(
            read_json::<Vec<u8>>(&dir.path().join("missing.json")).expect("read"),
            None
        );
        std::fs::write(&path, "{not json").expect("write");
        assert!(matches!(
            read_json::<Vec<u8>>(&path),
            Err(StateError::Json { .. })
        ));
    }
}
