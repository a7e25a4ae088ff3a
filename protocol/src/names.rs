//! Self-checking names used on the wire: host names, key names, deploy ids,
//! nonces and git revisions.
//!
//! Each is a newtype over `String` that can only be built through `FromStr`,
//! `TryFrom<String>` or `Deserialize`, all of which run the same check, so a
//! value of one of these types is well formed wherever it travels.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Longest input quoted back in an error message; hostile input stays short in logs.
const QUOTE_LIMIT: usize = 80;

/// A name that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} \"{value}\": {reason}")]
pub struct NameError {
    /// Which kind of name was being parsed ("host name", "nonce", ...).
    pub what: &'static str,
    /// The rejected input, escaped and shortened to a few dozen characters.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl NameError {
    pub(crate) fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        NameError {
            what,
            value: quote(value),
            reason,
        }
    }
}

/// Makes hostile input safe to echo in an error or a log line: control and
/// non-printing characters escaped, at most [`QUOTE_LIMIT`] characters kept.
pub(crate) fn quote(value: &str) -> String {
    at_most(value.chars().flat_map(char::escape_debug), QUOTE_LIMIT)
}

/// The first `limit` characters, with `...` when some were left out.
pub(crate) fn at_most(chars: impl Iterator<Item = char>, limit: usize) -> String {
    let mut text = String::new();
    for (count, c) in chars.enumerate() {
        if count == limit {
            text.push_str("...");
            break;
        }
        text.push(c);
    }
    text
}

/// Declares a checked string newtype: the check is the only way in.
macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(value: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                match check(value) {
                    Ok(()) => Ok($name(value.to_owned())),
                    Err(reason) => Err(NameError::new($what, value, reason)),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

checked_name!(
    /// A machine's host name, as in NixOS's `networking.hostName`: dot-separated
    /// labels of letters, digits, `-` and `_`, each 1 to 63 long and not starting
    /// or ending with `-` or `_`; at most 253 characters. Compared exactly.
    HostName,
    "host name",
    check_host_name
);

checked_name!(
    /// The name of a key, its id on the wire (`NAME` in Nix's `NAME:base64` key
    /// files): 1 to 128 characters among letters, digits and `.`, `_`, `-`, `+`, `@`;
    /// or, for an SSH key, its fingerprint `SHA256:<43 base64 characters>`.
    KeyName,
    "key name",
    check_key_name
);

checked_name!(
    /// A deploy's id, chosen by the sender and used everywhere as its idempotency
    /// key: 1 to 64 characters among letters, digits, `.`, `_`, `-`; never `.` or `..`
    /// (it names files in the daemon's state).
    DeployId,
    "deploy id",
    check_deploy_id
);

checked_name!(
    /// A single-use random value: lowercase hex of 16 to 64 bytes.
    Nonce,
    "nonce",
    check_nonce
);

checked_name!(
    /// A git commit id: exactly 40 lowercase hex digits.
    Revision,
    "revision",
    check_revision
);

impl Nonce {
    /// Bytes of randomness in a fresh nonce.
    pub const FRESH_BYTES: usize = 16;

    /// A fresh nonce from the operating system's random source.
    pub fn generate() -> Result<Nonce, getrandom::Error> {
        let mut bytes = [0u8; Self::FRESH_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(Nonce(hex::encode(bytes)))
    }
}

fn check_host_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    if value.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in value.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-', '_' and '.' are allowed");
        }
        let edge = |b: Option<u8>| matches!(b, Some(b'-' | b'_'));
        if edge(label.bytes().next()) || edge(label.bytes().last()) {
            return Err("a label may not start or end with '-' or '_'");
        }
    }
    Ok(())
}

fn check_key_name(value: &str) -> Result<(), &'static str> {
    if is_ssh_fingerprint(value) {
        return Ok(());
    }
    if value.is_empty() || value.len() > 128 {
        return Err("must be 1 to 128 characters long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_+@".contains(&b))
    {
        return Err("only letters, digits, '.', '-', '_', '+' and '@' are allowed");
    }
    Ok(())
}

/// Whether `value` is an SSH key's SHA-256 fingerprint as OpenSSH prints
/// it: `SHA256:` and 43 characters of unpadded base64.
pub(crate) fn is_ssh_fingerprint(value: &str) -> bool {
    value.strip_prefix("SHA256:").is_some_and(|digest| {
        digest.len() == 43
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

fn check_deploy_id(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    {
        return Err("only letters, digits, '.', '-' and '_' are allowed");
    }
    if value == "." || value == ".." {
        return Err("'.' and '..' are not deploy ids");
    }
    Ok(())
}

fn check_nonce(value: &str) -> Result<(), &'static str> {
    if value.len() < 32 || value.len() > 128 || !value.len().is_multiple_of(2) {
        return Err("must be 16 to 64 bytes written as hex");
    }
    if !is_lower_hex(value) {
        return Err("only lowercase hex digits are allowed");
    }
    Ok(())
}

fn check_revision(value: &str) -> Result<(), &'static str> {
    if value.len() != 40 || !is_lower_hex(value) {
        return Err("must be exactly 40 lowercase hex digits");
    }
    Ok(())
}

fn is_lower_hex(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in ["sambirano", "kelyus-2", "pi_4", "a.b.c", "x"] {
            assert!(good.parse::<HostName>().is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "a-", "_a", "a..b", ".a", "a b", "a/b", "é", &long] {
            assert!(bad.parse::<HostName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        assert!("cache.nixos.org-1".parse::<KeyName>().is_ok());
        assert!("ops-1".parse::<KeyName>().is_ok());
        let fingerprint = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        assert!(fingerprint.parse::<KeyName>().is_ok());
        for bad in [
            "",
            "a:b",
            "a b",
            "a/b",
            &"k".repeat(129),
            "SHA256:short",
            "MD5:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        ] {
            assert!(bad.parse::<KeyName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deploy_ids() {
        assert!("sambirano-20261127-ab12".parse::<DeployId>().is_ok());
        assert!("a.b_c-D".parse::<DeployId>().is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"d".repeat(65)] {
            assert!(bad.parse::<DeployId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nonces() {
        let fresh = Nonce::generate().expect("random source");
        assert_eq!(fresh.as_str().len(), 32);
        assert_ne!(fresh, Nonce::generate().expect("random source"));
        for bad in ["00", &"A".repeat(32), &"0".repeat(33), &"0".repeat(130)] {
            assert!(bad.parse::<Nonce>().is_err(), "{bad}");
        }
    }

    #[test]
    fn revisions() {
        assert!("0123456789abcdef0123456789abcdef01234567"
            .parse::<Revision>()
            .is_ok());
        for bad in ["abc", "0123456789ABCDEF0123456789abcdef01234567"] {
            assert!(bad.parse::<Revision>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialize_runs_the_check() {
        assert!(serde_json::from_str::<HostName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<HostName>("\"not ok\"").is_err());
    }

    #[test]
    fn errors_escape_control_characters() {
        let error = "a\n\u{1b}[2Jb".parse::<HostName>().expect_err("invalid");
        assert_eq!(error.value, "a\\n\\u{1b}[2Jb");
        assert!(!error.to_string().chars().any(char::is_control));
    }

    #[test]
    fn errors_quote_only_a_short_prefix() {
        let error = "x y".repeat(1000).parse::<HostName>().unwrap_err();
        assert!(error.value.len() < 100, "{}", error.value);
    }
}
