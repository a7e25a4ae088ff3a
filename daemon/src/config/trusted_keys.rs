//! `[[trusted_keys]]`: who may sign what. Each entry trusts exactly one key,
//! for what its `may` lists: a Nix-format key (`key`, or `key_file`), an SSH
//! key (`ssh`, an `authorized_keys` line, or `ssh_file`, a file holding one),
//! or an SSH CA (`ssh_ca`) whose certificates count when they name one of
//! the entry's `principals`. [`load`] turns the entries into the daemon's
//! [`TrustedKeys`].

use std::io::Read;
use std::path::{Path, PathBuf};

use deployd_protocol::ssh::{TrustedSshCa, TrustedSshKey};
use deployd_protocol::{KeyError, Permissions, PublicKey, TrustedKey, TrustedKeys};

use super::{ConfigError, KeyFiles};

/// The largest `ssh_file` read; a security key's public key line is under
/// 300 bytes.
const MAX_SSH_FILE_BYTES: u64 = 16 * 1024;

/// One `[[trusted_keys]]` entry, as written: exactly one of `key`,
/// `key_file`, `ssh`, `ssh_file` and `ssh_ca`, and what it may sign.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyEntry {
    /// `NAME:base64` of a Nix-format public key.
    pub key: Option<String>,
    /// Or a file holding it.
    pub key_file: Option<PathBuf>,
    /// Or an SSH public key, as an `authorized_keys` line: options
    /// (`no-touch-required`, `verify-required`), type, base64, comment.
    pub ssh: Option<String>,
    /// Or a file holding one such line (a `.pub` file).
    pub ssh_file: Option<PathBuf>,
    /// Or an SSH CA's public key line: certificates it signed count.
    pub ssh_ca: Option<String>,
    /// The certificate principals an `ssh_ca` entry accepts (at least one);
    /// refused on other entries.
    pub principals: Option<Vec<String>>,
    /// What it may sign; default all of `deploy`, `rollback`, `downgrade`, `read`.
    #[serde(default)]
    pub may: Option<Permissions>,
}

/// The one key an entry trusts.
enum Trusted<'a> {
    /// `key`.
    Key(&'a str),
    /// `key_file`.
    KeyFile(&'a Path),
    /// `ssh`.
    Ssh(&'a str),
    /// `ssh_file`.
    SshFile(&'a Path),
    /// `ssh_ca`, with the entry's principals (none when not given).
    SshCa {
        line: &'a str,
        principals: &'a [String],
    },
}

impl TrustedKeyEntry {
    /// The one key this entry trusts; `index` names the entry in errors.
    fn trusted(&self, index: usize) -> Result<Trusted<'_>, ConfigError> {
        let principals = self.principals.as_deref().unwrap_or_default();
        let mut given: Vec<(&str, Trusted<'_>)> = [
            self.key.as_deref().map(|text| ("key", Trusted::Key(text))),
            self.key_file
                .as_deref()
                .map(|path| ("key_file", Trusted::KeyFile(path))),
            self.ssh.as_deref().map(|line| ("ssh", Trusted::Ssh(line))),
            self.ssh_file
                .as_deref()
                .map(|path| ("ssh_file", Trusted::SshFile(path))),
            self.ssh_ca
                .as_deref()
                .map(|line| ("ssh_ca", Trusted::SshCa { line, principals })),
        ]
        .into_iter()
        .flatten()
        .collect();
        let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
        let trusted = match (given.pop(), given.is_empty()) {
            (Some((_, trusted)), true) => trusted,
            _ => {
                let found = if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(" and ")
                };
                return Err(ConfigError::Invalid(format!(
                    "trusted key {index}: give exactly one of key, key_file, ssh, ssh_file and ssh_ca (found {found})"
                )));
            }
        };
        if self.principals.is_some() && !matches!(trusted, Trusted::SshCa { .. }) {
            return Err(ConfigError::Invalid(format!(
                "trusted key {index}: principals are only for an ssh_ca entry (the principals its certificates must name)"
            )));
        }
        Ok(trusted)
    }
}

/// Builds the trusted keys of `entries`. With [`KeyFiles::PathsOnly`], key
/// files are only checked to be absolute paths, and left out.
pub(super) fn load(
    entries: &[TrustedKeyEntry],
    key_files: KeyFiles,
) -> Result<TrustedKeys, ConfigError> {
    let (mut keys, mut ssh_keys, mut cas) = (Vec::new(), Vec::new(), Vec::new());
    for (index, entry) in entries.iter().enumerate() {
        let index = index + 1;
        let may = entry.may.unwrap_or_default();
        let nix_key = |key: Result<PublicKey, KeyError>| {
            key.map(|key| TrustedKey { key, may })
                .map_err(|source| ConfigError::TrustedKey { index, source })
        };
        let ssh_error = |field| {
            move |source| ConfigError::TrustedSshKey {
                index,
                field,
                source,
            }
        };
        match entry.trusted(index)? {
            Trusted::Key(text) => keys.push(nix_key(text.parse())?),
            Trusted::KeyFile(path) if key_files == KeyFiles::PathsOnly => {
                check_absolute(index, "key_file", path)?;
            }
            Trusted::KeyFile(path) => keys.push(nix_key(PublicKey::load(path))?),
            Trusted::Ssh(line) => {
                if line.trim().contains('\n') {
                    return Err(ConfigError::Invalid(format!(
                        "trusted key {index}: ssh holds one key line; give each key its own entry"
                    )));
                }
                ssh_keys.push(TrustedSshKey::parse(line, may).map_err(ssh_error("ssh"))?);
            }
            Trusted::SshFile(path) if key_files == KeyFiles::PathsOnly => {
                check_absolute(index, "ssh_file", path)?;
            }
            Trusted::SshFile(path) => {
                let line = read_ssh_file(index, path)?;
                ssh_keys.push(TrustedSshKey::parse(&line, may).map_err(ssh_error("ssh_file"))?);
            }
            Trusted::SshCa { line, principals } => cas.push(
                TrustedSshCa::parse(line, principals.to_vec(), may).map_err(ssh_error("ssh_ca"))?,
            ),
        }
    }
    TrustedKeys::new(keys)
        .and_then(|trusted| trusted.with_ssh(ssh_keys, cas))
        .map_err(ConfigError::DuplicateKey)
}

/// Refuses a relative key file path: the daemon's working directory is no
/// place to look for keys.
fn check_absolute(index: usize, field: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "trusted key {index}: {field} must be an absolute path"
    )))
}

/// The one key line of an `ssh_file`; blank lines and `#` comments aside.
fn read_ssh_file(index: usize, path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::SshKeyFile {
        index,
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_SSH_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    let path = path.display();
    if text.len() as u64 > MAX_SSH_FILE_BYTES {
        return Err(ConfigError::Invalid(format!(
            "trusted key {index}: ssh_file {path} is larger than {MAX_SSH_FILE_BYTES} bytes: not one public key"
        )));
    }
    let mut lines =
        (text.lines().map(str::trim)).filter(|line| !line.is_empty() && !line.starts_with('#'));
    match (lines.next(), lines.next()) {
        (Some(line), None) => Ok(line.to_owned()),
        _ => Err(ConfigError::Invalid(format!(
            "trusted key {index}: ssh_file {path} must hold exactly one key line; give each key its own entry"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use deployd_protocol::Permissions;

    use super::super::{Config, ConfigError, KeyFiles};

    /// Public key lines made once with `ssh-keygen` (the security-key ones
    /// built from plain keys' public halves: a public key line needs no
    /// hardware).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyr5DXwzq2VGuNi1nv8begVccuVaOkSWDGTGWc4Y1O alice@kelyus";
    const ED25519_FINGERPRINT: &str = "SHA256:3aiXksXrm3uCVdW3qCTINz959UDQH4M6nVFm9lQ4yoI";
    const ECDSA_P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHB6IF9/zFoJ1dJfH7KTKD3H3gmS8OuFX+mqPifpqKqJM4KjRwha4ZiTjAxhmganFwZR/jszMqwIYYqpAMLJzzg= bob@kelyus";
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAID8qx7BRlL/EfynJA0DSPNy2AsUm09LI/sC4jX8ziPKmAAAABHNzaDo= erin@kelyus";
    const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBCQZ+ZIHlZFdyeTo1xX9FIirwofgam/p//BGzf14VFBVi3GSCZPGnDmBTDXkM8njRLH9G73E6HKqborPW62T+e0AAAAEc3NoOg== frank@kelyus";
    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA/GeuAVmLaOJHJHVZhOVP6qI0WgLxOPZ371l2vTxSAL fleet-ca";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDMwa45Vw3uR9m73PgQpeIDTVsqARuOFAcEJ3V5uudCSwxpcuxehZsSB54v4DW+rWKSBPnvWcEKJGp7FEBpvEsmHD8pdsmxiCWe8iX7zxrICWe33Bp0ayNJgkU3pRwgfbwSRgRGpCLmVa5ytc0axZT0R6rDTxG7jvUcJKURbGDGTJd5GEPvy0tpFQEBl2fRCd/ywsK415FaDTWH+nVcXGRbDGyoseZt8yXhkuxgSy0F0pKZ/etOm37FYEKNUHMIEkrT5eHz/IshWFcwZztYP9bLo0mZgI71IIBGQxPhfBniXcUoCnbV2mJlAS3Wi9L4kK8AkH8UqWeuS9qlVIMk4NvB carol@kelyus";
    const ECDSA_P384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBAmPDWPqst7+OzpGrO1a6fLuV45PICfpylOn6dn2EvOQDOvv3spc0ZbW0VuWVTqVTypIwygDIV5eEqUWQpTVNhh/e+1XEmJLkWVVu403vDI8oEOvLCla1oebVdJTOeiDgA== dave";
    const NIX_KEY: &str = "ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI=";

    /// A whole config whose `[[trusted_keys]]` are `entries` (TOML tables'
    /// bodies).
    fn config(entries: &[&str]) -> String {
        let mut text = String::from("hostname = \"sambirano\"\n");
        for entry in entries {
            text.push_str(&format!("[[trusted_keys]]\n{entry}\n"));
        }
        text.push_str("[nix]\nsubstituters = [\"http://kelyus:5000\"]\ntrusted_public_keys = [\"kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk=\"]\n");
        text
    }

    fn parse(entries: &[&str], key_files: KeyFiles) -> Result<Config, ConfigError> {
        Config::parse(&config(entries), Path::new("test.toml"), key_files)
    }

    /// The error and its causes on one line, as `deployd check-config` prints it.
    fn reason(error: &ConfigError) -> String {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        message
    }

    #[test]
    fn ssh_keys_and_cas_are_trusted_beside_nix_keys() {
        let entries = [
            format!("key = {NIX_KEY:?}"),
            format!("ssh = {ED25519:?}\nmay = [\"deploy\", \"read\"]"),
            format!("ssh = {ECDSA_P256:?}"),
            format!("ssh = \"verify-required {SK_ED25519}\""),
            format!("ssh = \"no-touch-required {SK_ECDSA}\""),
            format!("ssh_ca = {CA:?}\nprincipals = [\"deployer\", \"deployer@sambirano\"]\nmay = [\"deploy\", \"rollback\", \"read\"]"),
        ];
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let config = parse(&entries, KeyFiles::Read).expect("valid");
        assert_eq!(config.trusted_keys.len(), 6);
        assert_eq!(
            config.trusted_keys.get("ops-1").expect("nix key").may,
            Permissions::ALL
        );
        // SSH keys are not looked up by a Nix key name.
        assert!(config.trusted_keys.get(ED25519_FINGERPRINT).is_none());
    }

    #[test]
    fn an_ssh_file_holds_one_key_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alice.pub");
        std::fs::write(&path, format!("# alice's security key\n\n{SK_ED25519}\n")).expect("write");
        let entry = format!("ssh_file = {path:?}");
        let config = parse(&[&entry], KeyFiles::Read).expect("valid");
        assert_eq!(config.trusted_keys.len(), 1);

        std::fs::write(&path, format!("{SK_ED25519}\n{ED25519}\n")).expect("write");
        let error = parse(&[&entry], KeyFiles::Read).expect_err("two keys");
        assert!(reason(&error).contains("exactly one key line"), "{error}");
        std::fs::remove_file(&path).expect("remove");
        let error = parse(&[&entry], KeyFiles::Read).expect_err("missing");
        assert!(
            reason(&error).starts_with("trusted key 1: cannot read ssh_file"),
            "{}",
            reason(&error)
        );
    }

    #[test]
    fn at_build_time_key_files_are_only_checked_to_be_absolute() {
        let entries = [
            "ssh_file = \"/run/agenix/alice.pub\"",
            "key_file = \"/run/agenix/ops-1.public\"",
        ];
        let config = parse(&entries, KeyFiles::PathsOnly).expect("valid");
        assert!(config.trusted_keys.is_empty());
        for entry in ["ssh_file = \"alice.pub\"", "key_file = \"ops-1.public\""] {
            let error = parse(&[entry], KeyFiles::PathsOnly).expect_err(entry);
            assert!(
                reason(&error).contains("must be an absolute path"),
                "{error}"
            );
        }
    }

    #[test]
    fn bad_ssh_entries_say_what_is_wrong() {
        let principals = "principals = [\"deployer\"]";
        let cases = [
            (
                "ssh = \"ssh-ed25519 AAAAnotbase64! alice\"".to_owned(),
                "trusted key 1 (ssh): not an OpenSSH public key",
            ),
            (format!("ssh = {RSA:?}"), "SSH key type ssh-rsa is not accepted"),
            (
                format!("ssh = {ECDSA_P384:?}"),
                "SSH key type ecdsa-sha2-nistp384 is not accepted",
            ),
            (
                format!("ssh_ca = {RSA:?}\n{principals}"),
                "trusted key 1 (ssh_ca): SSH key type ssh-rsa",
            ),
            (
                format!("ssh = \"cert-authority {CA}\""),
                "cert-authority keys are trusted with ssh_ca",
            ),
            (
                format!("ssh = \"command=\\\"/bin/sh\\\" {ED25519}\""),
                "option",
            ),
            (
                format!("ssh = \"\"\"\n{ED25519}\n{ECDSA_P256}\n\"\"\""),
                "give each key its own entry",
            ),
            (
                format!("ssh_ca = {CA:?}"),
                "trusted key 1 (ssh_ca): an SSH CA needs at least one principal",
            ),
            (
                format!("ssh_ca = {CA:?}\nprincipals = []"),
                "an SSH CA needs at least one principal",
            ),
            (
                format!("ssh_ca = {CA:?}\nprincipals = [\"deployer,root\"]"),
                "holds a comma",
            ),
            (
                format!("ssh = {ED25519:?}\n{principals}"),
                "trusted key 1: principals are only for an ssh_ca entry",
            ),
            (
                format!("key = {NIX_KEY:?}\n{principals}"),
                "principals are only for an ssh_ca entry",
            ),
            (
                format!("ssh_ca = {CA:?}\nkey = {NIX_KEY:?}\n{principals}"),
                "trusted key 1: give exactly one of key, key_file, ssh, ssh_file and ssh_ca (found key and ssh_ca)",
            ),
            (
                format!("ssh = {ED25519:?}\nssh_file = \"/run/alice.pub\""),
                "(found ssh and ssh_file)",
            ),
            ("may = [\"read\"]".to_owned(), "(found none)"),
            (
                format!("ssh = {ED25519:?}\n[[trusted_keys]]\nssh = \"no-touch-required {ED25519}\""),
                "[[trusted_keys]]: two trusted keys are named SHA256:3aiXksXrm3uCVdW3qCTINz959UDQH4M6nVFm9lQ4yoI",
            ),
        ];
        for (entry, expected) in cases {
            let error = parse(&[&entry], KeyFiles::Read).expect_err(expected);
            let reason = reason(&error);
            assert!(reason.contains(expected), "{expected}: {reason}");
            assert!(!reason.contains('\n'), "one line: {reason}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        for (entry, expected) in [
            (
                format!("ssh_ca = {CA:?}\nprincipal = [\"deployer\"]"),
                "`principal`",
            ),
            (
                format!("ssh = {ED25519:?}\noptions = [\"no-touch-required\"]"),
                "`options`",
            ),
        ] {
            let error = parse(&[&entry], KeyFiles::Read).expect_err(expected);
            // The parser's message shows the line, so it spans several.
            let reason = reason(&error);
            assert!(
                reason.contains(&format!("unknown field {expected}")),
                "{reason}"
            );
            assert!(reason.contains("`ssh_ca`, `principals`, `may`"), "{reason}");
        }
    }
}
