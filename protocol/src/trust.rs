//! Who is trusted to sign what: the deploy keys pinned in a host's config,
//! each with its permissions: Nix-format keys by name, SSH keys by
//! fingerprint, SSH CAs by their key.

use std::collections::HashMap;

use crate::keys::PublicKey;
use crate::kinds::{Permission, Permissions};
use crate::names::KeyName;
use crate::ssh::{SshTrust, TrustedSshCa, TrustedSshKey};

/// A deploy key and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The public key; its name is the `keyid` signatures must carry.
    pub key: PublicKey,
    /// What messages signed by it may do.
    pub may: Permissions,
}

impl TrustedKey {
    /// Whether this key may do `permission`.
    pub fn allows(&self, permission: Permission) -> bool {
        self.may.allows(permission)
    }
}

/// Two trusted keys share a name, so a `keyid` would be ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two trusted keys are named {0}")]
pub struct DuplicateKeyName(pub KeyName);

/// The set of trusted deploy keys, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    by_name: HashMap<KeyName, TrustedKey>,
    ssh: SshTrust,
}

impl TrustedKeys {
    /// Builds the set, refusing two keys with one name.
    pub fn new(keys: impl IntoIterator<Item = TrustedKey>) -> Result<Self, DuplicateKeyName> {
        let mut by_name = HashMap::new();
        for trusted in keys {
            let name = trusted.key.name().clone();
            if by_name.insert(name.clone(), trusted).is_some() {
                return Err(DuplicateKeyName(name));
            }
        }
        Ok(TrustedKeys {
            by_name,
            ssh: SshTrust::default(),
        })
    }

    /// Adds SSH keys and CAs, refusing a key trusted twice.
    pub fn with_ssh(
        mut self,
        keys: impl IntoIterator<Item = TrustedSshKey>,
        cas: impl IntoIterator<Item = TrustedSshCa>,
    ) -> Result<Self, DuplicateKeyName> {
        for key in keys {
            if self
                .ssh
                .keys
                .iter()
                .any(|k| k.fingerprint() == key.fingerprint())
            {
                return Err(DuplicateKeyName(key.fingerprint().clone()));
            }
            self.ssh.keys.push(key);
        }
        for ca in cas {
            if self
                .ssh
                .cas
                .iter()
                .any(|c| c.fingerprint() == ca.fingerprint())
            {
                return Err(DuplicateKeyName(ca.fingerprint().clone()));
            }
            self.ssh.cas.push(ca);
        }
        Ok(self)
    }

    /// The trusted SSH keys and CAs.
    pub(crate) fn ssh(&self) -> &SshTrust {
        &self.ssh
    }

    /// The trusted key with this name.
    pub fn get(&self, name: &str) -> Option<&TrustedKey> {
        self.by_name.get(name)
    }

    /// How many keys and CAs are trusted.
    pub fn len(&self) -> usize {
        self.by_name.len() + self.ssh.keys.len() + self.ssh.cas.len()
    }

    /// Whether no key is trusted (then nothing can be verified).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
