//! A cache's `.narinfo`, read as Nix reads it (Nix:
//! src/libstore/nar-info.cc): `Key: value` lines; `StorePath`, `URL`,
//! `NarHash` and `NarSize` required; `Compression` `bzip2` when absent;
//! `FileSize` optional; `References` the base names of the paths it refers
//! to. Nothing here is trusted: the text is kept verbatim for Nix, which
//! checks its signatures and the NAR's hash itself.

use deployd_protocol::{StorePath, STORE_DIR};

/// The largest narinfo read: most are under a KiB, but a path's references
/// are all in it (about 60 bytes each), and a path may refer to thousands
/// (a buildEnv of a large closure): 1 MiB holds some 16,000. A larger one
/// stops the fast fetch, and Nix reads it itself.
pub const MAX_NARINFO_BYTES: usize = 1024 * 1024;

/// A parsed narinfo, with the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    /// The path it describes (the one asked for).
    pub store_path: StorePath,
    /// Where its NAR is, relative to the cache's root (or absolute).
    pub url: String,
    /// How the NAR file is compressed (`none`, `xz`, `bzip2`, `zstd`, ...).
    pub compression: String,
    /// The size of the NAR file as served, when the cache says.
    pub file_size: Option<u64>,
    /// The size of the NAR once uncompressed.
    pub nar_size: u64,
    /// The paths it refers to (itself included, for most).
    pub references: Vec<StorePath>,
    /// The text as the cache served it.
    pub text: String,
}

/// Why a narinfo is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarInfoError {
    /// Longer than [`MAX_NARINFO_BYTES`].
    #[error("its narinfo is longer than {MAX_NARINFO_BYTES} bytes")]
    TooLong,
    /// Not UTF-8 text.
    #[error("its narinfo is not text")]
    NotText,
    /// A required field is absent.
    #[error("its narinfo has no {0} line")]
    Missing(&'static str),
    /// A field's value cannot be read.
    #[error("its narinfo's {0} line is malformed")]
    Malformed(&'static str),
    /// It describes another path than the one asked for.
    #[error("its narinfo describes {0}, not the path asked for")]
    OtherPath(String),
}

impl NarInfo {
    /// Reads `bytes`, the narinfo served for `asked`.
    pub fn parse(asked: &StorePath, bytes: &[u8]) -> Result<NarInfo, NarInfoError> {
        if bytes.len() > MAX_NARINFO_BYTES {
            return Err(NarInfoError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| NarInfoError::NotText)?;
        let mut store_path = None;
        let mut url = None;
        let mut nar_hash = false;
        let mut nar_size = None;
        let mut compression = None;
        let mut file_size = None;
        let mut references = Vec::new();
        for line in text.lines() {
            // Nix: src/libstore/nar-info.cc splits each line at its first
            // ": "; a line without one is an error.
            let Some((key, value)) = line.split_once(": ") else {
                if line.is_empty() {
                    continue;
                }
                return Err(NarInfoError::Malformed("a"));
            };
            match key {
                "StorePath" => store_path = Some(value),
                "URL" => url = Some(value),
                "NarHash" => nar_hash = !value.is_empty(),
                "NarSize" => {
                    nar_size = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| NarInfoError::Malformed("NarSize"))?,
                    )
                }
                "FileSize" => {
                    file_size = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| NarInfoError::Malformed("FileSize"))?,
                    )
                }
                "Compression" => compression = Some(value),
                "References" => {
                    for name in value.split_whitespace() {
                        let path = format!("{STORE_DIR}/{name}")
                            .parse::<StorePath>()
                            .map_err(|_| NarInfoError::Malformed("References"))?;
                        references.push(path);
                    }
                }
                _ => {}
            }
        }
        let store_path = store_path.ok_or(NarInfoError::Missing("StorePath"))?;
        if store_path != asked.as_str() {
            return Err(NarInfoError::OtherPath(store_path.to_owned()));
        }
        let url = url.ok_or(NarInfoError::Missing("URL"))?;
        if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NarInfoError::Malformed("URL"));
        }
        if !nar_hash {
            return Err(NarInfoError::Missing("NarHash"));
        }
        // Nix: src/libstore/nar-info.cc refuses a NarSize of 0 as missing.
        let nar_size = nar_size
            .filter(|&size| size > 0)
            .ok_or(NarInfoError::Missing("NarSize"))?;
        // Nix: src/libstore/nar-info.cc, no Compression line means bzip2.
        let compression = match compression {
            None | Some("") => "bzip2",
            Some(other) => other,
        };
        Ok(NarInfo {
            store_path: asked.clone(),
            url: url.to_owned(),
            compression: compression.to_owned(),
            file_size,
            nar_size,
            references,
            text: text.to_owned(),
        })
    }

    /// The bytes its NAR file may have: `FileSize` when given, else as
    /// many as the NAR has uncompressed plus room for a compressor's worst
    /// case (compressed data a little larger than the input).
    pub fn download_limit(&self) -> u64 {
        self.file_size
            .unwrap_or_else(|| self.nar_size + self.nar_size / 8 + 64 * 1024)
    }

    /// The bytes its NAR file is expected to take on disk.
    pub fn expected_bytes(&self) -> u64 {
        self.file_size.unwrap_or(self.nar_size)
    }

    /// The narinfo's text with its `URL` line set to `url`, every other
    /// line as served (the signatures cover the path, hash, size and
    /// references, not the URL: Nix: src/libstore/path-info.cc,
    /// `fingerprint`).
    pub fn with_url(&self, url: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + url.len());
        for line in self.text.lines() {
            if line.starts_with("URL: ") {
                out.push_str("URL: ");
                out.push_str(url);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

/// The file name a NAR compressed with `compression` is staged under, or
/// `None` for a compression Nix would not read (left to Nix).
/// Nix: src/libutil/compression.cc names none, xz, bzip2, zstd, br and the
/// libarchive filters; the extensions are those Nix writes
/// (src/libstore/binary-cache-store.cc).
pub fn staged_nar_name(store_path: &StorePath, compression: &str) -> Option<String> {
    let extension = match compression {
        "none" => "",
        "xz" => ".xz",
        "bzip2" => ".bz2",
        "zstd" => ".zst",
        "br" => ".br",
        "gzip" => ".gz",
        "lz4" => ".lz4",
        _ => return None,
    };
    Some(format!("nar/{}.nar{extension}", store_path.hash_part()))
}

#[cfg(test)]
mod tests;
