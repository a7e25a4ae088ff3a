//! A binary cache's `.narinfo`: the fields whose signature Nix checks, and
//! that check, as Nix does it: Ed25519 over the fingerprint
//! `1;<store path>;<NAR hash>;<NAR size>;<references, comma-separated>`,
//! by a key named as the signature is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_protocol::ed25519_dalek::Signature;
use deployd_protocol::PublicKey;

/// What a narinfo says about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    store_path: String,
    nar_hash: String,
    nar_size: String,
    references: Vec<String>,
    signatures: Vec<String>,
}

impl NarInfo {
    /// Reads the `Key: value` lines; `None` when a signed field is missing.
    pub fn parse(text: &str) -> Option<NarInfo> {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .map(str::to_owned)
        };
        Some(NarInfo {
            store_path: field("StorePath")?,
            nar_hash: field("NarHash")?,
            nar_size: field("NarSize")?,
            references: field("References")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            signatures: text
                .lines()
                .filter_map(|line| line.strip_prefix("Sig: "))
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Whether one of its signatures is by one of `keys` and verifies.
    pub fn signed_by_any(&self, keys: &[PublicKey]) -> bool {
        let fingerprint = self.fingerprint();
        self.signatures.iter().any(|signature| {
            let Some((name, sig)) = signature.split_once(':') else {
                return false;
            };
            let Some(sig) = STANDARD
                .decode(sig)
                .ok()
                .and_then(|bytes| Signature::from_slice(&bytes).ok())
            else {
                return false;
            };
            keys.iter().any(|key| {
                key.name().as_str() == name
                    && key
                        .verifying_key()
                        .verify_strict(fingerprint.as_bytes(), &sig)
                        .is_ok()
            })
        })
    }

    /// The names of the keys that signed it.
    pub fn signer_names(&self) -> Vec<&str> {
        self.signatures
            .iter()
            .filter_map(|signature| signature.split_once(':').map(|(name, _)| name))
            .collect()
    }

    fn fingerprint(&self) -> String {
        let store_dir = self
            .store_path
            .rsplit_once('/')
            .map_or("/nix/store", |(dir, _)| dir);
        let references: Vec<String> = self
            .references
            .iter()
            .map(|reference| format!("{store_dir}/{reference}"))
            .collect();
        format!(
            "1;{};{};{};{}",
            self.store_path,
            self.nar_hash,
            self.nar_size,
            references.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployd_protocol::SecretKey;

    const UNSIGNED: &str = "StorePath: /nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x\n\
        URL: nar/1.nar.xz\nCompression: xz\n\
        NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n\
        NarSize: 4096\n\
        References: 0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x 1d5w1kfhl3ys4kav8jmzz8ncmkjprmd6-etc\n";

    fn signed_by(key: &SecretKey) -> String {
        let info = NarInfo::parse(UNSIGNED).expect("parses");
        let signature = key.sign(info.fingerprint().as_bytes());
        format!(
            "{UNSIGNED}Sig: {}:{}\n",
            key.name(),
            STANDARD.encode(signature.to_bytes())
        )
    }

    #[test]
    fn the_fingerprint_is_nixs() {
        let info = NarInfo::parse(UNSIGNED).expect("parses");
        assert_eq!(
            info.fingerprint(),
            "1;/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x;\
             sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;4096;\
             /nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x,\
             /nix/store/1d5w1kfhl3ys4kav8jmzz8ncmkjprmd6-etc"
        );
    }

    #[test]
    fn only_a_trusted_key_that_verifies_counts() {
        let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
        let other = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
        let text = signed_by(&cache);
        let info = NarInfo::parse(&text).expect("parses");
        assert!(info.signed_by_any(&[cache.public_key()]));
        assert!(
            !info.signed_by_any(&[other.public_key()]),
            "same name, other key"
        );
        assert!(!info.signed_by_any(&[]));
        assert_eq!(info.signer_names(), ["cache-1"]);
        let tampered = text.replace("NarSize: 4096", "NarSize: 4097");
        let tampered = NarInfo::parse(&tampered).expect("parses");
        assert!(!tampered.signed_by_any(&[cache.public_key()]));
        assert!(!NarInfo::parse(UNSIGNED)
            .expect("parses")
            .signed_by_any(&[cache.public_key()]));
        assert_eq!(NarInfo::parse("StorePath: /nix/store/x\n"), None);
    }
}
