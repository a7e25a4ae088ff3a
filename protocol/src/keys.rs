//! Ed25519 keys in Nix's key-file format.
//!
//! A secret key file holds `NAME:base64(seed || public)` (64 bytes), a public
//! key file `NAME:base64(public)` (32 bytes): exactly what
//! `nix-store --generate-binary-cache-key` writes, so the same keys serve as
//! deploy keys and Nix accepts the keys deployd makes. A secret key has no
//! `Display`, redacts its `Debug` and is wiped from memory on drop.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::names::{KeyName, NameError};

/// Why a key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// There is no `:` between the name and the key.
    #[error("a key must be written NAME:BASE64")]
    MissingColon,
    /// The name before the `:` is not a valid key name.
    #[error("bad key name")]
    Name(#[source] NameError),
    /// The part after the `:` is not standard base64.
    #[error("the key is not valid base64")]
    Base64(#[source] base64::DecodeError),
    /// The decoded key has the wrong size.
    #[error("a {kind} key has {expected} bytes, this one has {found}")]
    Length {
        /// "secret" or "public".
        kind: &'static str,
        /// The size Nix's format requires.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// The public half stored in a secret key does not belong to its seed.
    #[error("the secret key's public half does not match its seed (corrupt key file)")]
    PublicHalfMismatch,
    /// The bytes are not a usable Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    Point(#[source] ed25519_dalek::SignatureError),
    /// The public key has small order: it would accept forged signatures.
    #[error("weak Ed25519 public key (small order)")]
    WeakKey,
    /// The key file could not be read.
    #[error("cannot read key file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is far larger than any key.
    #[error("{path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("no randomness from the operating system")]
    Random(#[source] getrandom::Error),
}

/// A named Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: KeyName,
    key: VerifyingKey,
}

/// A named Ed25519 secret key; never printed, wiped on drop.
pub struct SecretKey {
    name: KeyName,
    /// `SigningKey` zeroizes itself on drop.
    key: SigningKey,
}

/// The largest key file read; real ones are under 200 bytes.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Splits `NAME:BASE64`, checks the name and decodes the key bytes into a
/// buffer that is wiped on drop, whether decoding succeeds or not.
fn split_key_text(text: &str) -> Result<(KeyName, Zeroizing<Vec<u8>>), KeyError> {
    let (name, encoded) = text
        .trim_end()
        .split_once(':')
        .ok_or(KeyError::MissingColon)?;
    let name = name.parse().map_err(KeyError::Name)?;
    let mut bytes = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(encoded.len())]);
    let length = STANDARD
        .decode_slice(encoded, bytes.as_mut_slice())
        .map_err(|error| match error {
            base64::DecodeSliceError::DecodeError(error) => KeyError::Base64(error),
            base64::DecodeSliceError::OutputSliceTooSmall => {
                unreachable!("the buffer holds the estimated length")
            }
        })?;
    bytes.truncate(length);
    Ok((name, bytes))
}

/// Reads a key file into a buffer that is wiped on drop and never reallocated.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

impl PublicKey {
    /// Builds a public key from its parts, refusing weak keys.
    pub fn new(name: KeyName, key: VerifyingKey) -> Result<PublicKey, KeyError> {
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(PublicKey { name, key })
    }

    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        read_key_file(path)?.parse()
    }

    /// The key's name, its id on the wire.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The Ed25519 key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split_key_text(text)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            kind: "public",
            expected: 32,
            found: bytes.len(),
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(KeyError::Point)?;
        PublicKey::new(name, key)
    }
}

/// `NAME:base64`, the format of Nix's public key files and `trusted-public-keys`.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, STANDARD.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate(name: KeyName) -> Result<SecretKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(KeyError::Random)?;
        Ok(SecretKey {
            name,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses the text of a secret key file (`NAME:base64(64 bytes)`).
    pub fn from_key_file_text(text: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split_key_text(text)?;
        if bytes.len() != 64 {
            return Err(KeyError::Length {
                kind: "secret",
                expected: 64,
                found: bytes.len(),
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[32..] {
            return Err(KeyError::PublicHalfMismatch);
        }
        Ok(SecretKey { name, key })
    }

    /// Reads a secret key file.
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        SecretKey::from_key_file_text(&read_key_file(path)?)
    }

    /// The text of the secret key file, in a buffer wiped on drop (sized up
    /// front, so no copy is left behind by a reallocation).
    pub fn to_key_file_text(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.key.to_keypair_bytes());
        let encoded_length = base64::encoded_len(bytes.len(), true).unwrap_or(usize::MAX);
        let mut text = Zeroizing::new(String::with_capacity(
            self.name.as_str().len() + 1 + encoded_length,
        ));
        text.push_str(self.name.as_str());
        text.push(':');
        STANDARD.encode_string(bytes.as_ref(), &mut text);
        text
    }

    /// The key's name, its id on the wire.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SecretKey {
        SecretKey::generate(name.parse().expect("name")).expect("random")
    }

    #[test]
    fn key_files_round_trip() {
        let secret = key("ops-1");
        let text = secret.to_key_file_text();
        assert!(text.starts_with("ops-1:"));
        let again = SecretKey::from_key_file_text(&text).expect("parse");
        assert_eq!(again.public_key(), secret.public_key());
        let public = secret.public_key().to_string();
        assert_eq!(
            public.parse::<PublicKey>().expect("parse"),
            secret.public_key()
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = key("ops-1");
        let text = secret.to_key_file_text();
        let encoded = text.split_once(':').expect("colon").1;
        let debug = format!("{secret:?}");
        assert_eq!(debug, r#"SecretKey { name: KeyName("ops-1"), .. }"#);
        assert!(!debug.contains(encoded));
    }

    #[test]
    fn key_files_load_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = key("ops-1");
        let path = dir.path().join("ops-1.secret");
        std::fs::write(&path, secret.to_key_file_text().as_bytes()).expect("write");
        let loaded = SecretKey::load(&path).expect("load");
        assert_eq!(loaded.public_key(), secret.public_key());
        std::fs::write(&path, "k:".repeat(3000)).expect("write");
        assert!(matches!(
            SecretKey::load(&path),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(matches!(
            PublicKey::load(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn trailing_newline_is_accepted() {
        let secret = key("ops-1");
        let text = format!("{}\n", secret.to_key_file_text().as_str());
        assert!(SecretKey::from_key_file_text(&text).is_ok());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = key("ops-1");
        let public = secret.public_key().to_string();
        let b64 = public.split_once(':').expect("colon").1;
        assert!(matches!(
            "nocolon".parse::<PublicKey>(),
            Err(KeyError::MissingColon)
        ));
        assert!(matches!(
            format!("bad name:{b64}").parse::<PublicKey>(),
            Err(KeyError::Name(_))
        ));
        assert!(matches!(
            "k:!!!!".parse::<PublicKey>(),
            Err(KeyError::Base64(_))
        ));
        assert!(matches!(
            SecretKey::from_key_file_text(&public),
            Err(KeyError::Length {
                expected: 64,
                found: 32,
                ..
            })
        ));
        let secret_text = secret.to_key_file_text();
        assert!(matches!(
            secret_text.parse::<PublicKey>(),
            Err(KeyError::Length {
                expected: 32,
                found: 64,
                ..
            })
        ));
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("k:{}", STANDARD.encode(identity));
        assert!(matches!(weak.parse::<PublicKey>(), Err(KeyError::WeakKey)));
    }

    #[test]
    fn mismatched_public_half_is_refused() {
        let one = key("a");
        let two = key("a");
        let mut bytes = one.key.to_keypair_bytes();
        bytes[32..].copy_from_slice(two.key.verifying_key().as_bytes());
        let text = format!("a:{}", STANDARD.encode(bytes));
        assert!(matches!(
            SecretKey::from_key_file_text(&text),
            Err(KeyError::PublicHalfMismatch)
        ));
    }
}
