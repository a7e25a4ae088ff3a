//! `StorePath`: a top-level path in the Nix store, checked the way Nix checks
//! the paths it accepts.

use std::fmt;
use std::str::FromStr;

use crate::names::quote;

/// The store directory deployd works with.
pub const STORE_DIR: &str = "/nix/store";

/// Nix's base32 alphabet (no `e`, `o`, `u`, `t`).
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
/// Characters of the hash part: 160 bits in base32.
const HASH_LENGTH: usize = 32;
/// Longest name Nix allows after the hash and the dash.
const MAX_NAME_LENGTH: usize = 211;

/// A path `/nix/store/<32 base32 chars>-<name>`, with nothing after the name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorePath(String);

/// Why a string is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store path \"{value}\": {reason}")]
pub struct StorePathError {
    /// The rejected input, escaped and shortened.
    pub value: String,
    /// The rule it broke.
    pub reason: StorePathRule,
}

/// The rule a rejected store path broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorePathRule {
    /// It does not start with `/nix/store/`.
    #[error("not inside {STORE_DIR}/")]
    NotInStore,
    /// It has a `/` after the store directory: a file inside a path, or `..` tricks.
    #[error("not a top-level store path (a '/' after the store directory)")]
    NotTopLevel,
    /// The hash part is not 32 characters long.
    #[error("the hash part must be 32 characters followed by '-'")]
    HashLength,
    /// The hash part has a character outside Nix's base32.
    #[error("the hash part has a character outside Nix's base32 alphabet")]
    HashCharacter,
    /// The name after the hash is empty or longer than Nix allows.
    #[error("the name must be 1 to 211 characters long")]
    NameLength,
    /// The name starts with `.` (this covers `.` and `..`).
    #[error("the name may not start with '.'")]
    DotName,
    /// The name has a character Nix does not allow in store paths.
    #[error("the name may only hold letters, digits and '+-._?='")]
    NameCharacter,
}

impl StorePath {
    /// The whole path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32-character hash part (the narinfo's file name).
    pub fn hash_part(&self) -> &str {
        &self.0[STORE_DIR.len() + 1..][..HASH_LENGTH]
    }

    /// The name after the hash and the dash.
    pub fn name(&self) -> &str {
        &self.0[STORE_DIR.len() + 1 + HASH_LENGTH + 1..]
    }
}

fn check(value: &str) -> Result<(), StorePathRule> {
    let rest = value
        .strip_prefix(STORE_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(StorePathRule::NotInStore)?;
    if rest.contains('/') {
        return Err(StorePathRule::NotTopLevel);
    }
    let (hash, name) = rest.split_once('-').ok_or(StorePathRule::HashLength)?;
    if hash.len() != HASH_LENGTH {
        return Err(StorePathRule::HashLength);
    }
    if !hash.bytes().all(|b| NIX_BASE32.contains(&b)) {
        return Err(StorePathRule::HashCharacter);
    }
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return Err(StorePathRule::NameLength);
    }
    if name.starts_with('.') {
        return Err(StorePathRule::DotName);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
    {
        return Err(StorePathRule::NameCharacter);
    }
    Ok(())
}

impl FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(value: &str) -> Result<Self, StorePathError> {
        match check(value) {
            Ok(()) => Ok(StorePath(value.to_owned())),
            Err(reason) => Err(StorePathError {
                value: quote(value),
                reason,
            }),
        }
    }
}

impl TryFrom<String> for StorePath {
    type Error = StorePathError;
    fn try_from(value: String) -> Result<Self, StorePathError> {
        value.parse()
    }
}

impl From<StorePath> for String {
    fn from(path: StorePath) -> String {
        path.0
    }
}

impl AsRef<str> for StorePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-24.05";

    #[test]
    fn accepts_a_system_path_and_splits_it() {
        let path: StorePath = GOOD.parse().expect("valid");
        assert_eq!(path.hash_part(), "0c8rfq3blmslvm3w5qd4ymrhng1nkdk9");
        assert_eq!(path.name(), "nixos-system-sambirano-24.05");
        assert_eq!(path.to_string(), GOOD);
    }

    #[test]
    fn serde_round_trip_checks() {
        let json = serde_json::to_string(&GOOD.parse::<StorePath>().expect("valid")).expect("json");
        assert_eq!(
            serde_json::from_str::<StorePath>(&json)
                .expect("back")
                .as_str(),
            GOOD
        );
        assert!(serde_json::from_str::<StorePath>("\"/etc/passwd\"").is_err());
    }
}
