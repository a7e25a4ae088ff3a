//! Signing through `ssh-agent`: the deploy key is an SSH key or certificate
//! the agent holds (a FIDO security key among them), named by its public
//! half. push never sees a secret: it asks the agent (`SSH_AUTH_SOCK`) to
//! sign the SSHSIG data of the PAE bytes, checks the answer with the
//! host's own verifier code, and wraps it as `ssh-keygen -Y sign` would.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use deployd_protocol::ssh::{encode_sshsig, fingerprint, signed_data, SshSigner, Sshsig};
use deployd_protocol::{EnvelopeSignature, KeyName, SignatureValue};
use ssh_agent_client_rs::{Client as AgentClient, Identity};
use ssh_key::{Certificate, PublicKey};

/// The environment variable naming the agent's socket.
pub const AGENT_SOCKET_ENV: &str = "SSH_AUTH_SOCK";

/// An SSH key or certificate whose secret half `ssh-agent` holds.
#[derive(Clone)]
pub struct AgentKey {
    signer: SshSigner,
    fingerprint: KeyName,
    socket: PathBuf,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKey({})", self.fingerprint)
    }
}

/// Whether `text` is an OpenSSH public key or certificate line (as opposed
/// to a Nix-format key file).
pub fn is_ssh_public_text(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or_default();
    first.starts_with("ssh-") || first.starts_with("sk-") || first.starts_with("ecdsa-sha2-")
}

impl AgentKey {
    /// The key or certificate in `text` (read from `path`), checked against
    /// the agent: the agent runs and holds it.
    pub fn from_public_text(path: &Path, text: &str) -> Result<AgentKey> {
        let line = text.trim();
        let signer = if line
            .split_whitespace()
            .next()
            .is_some_and(|kind| kind.ends_with("-cert-v01@openssh.com"))
        {
            let certificate = Certificate::from_openssh(line).map_err(|error| {
                anyhow!("{} is not an OpenSSH certificate: {error}", path.display())
            })?;
            SshSigner::Certificate(Box::new(certificate))
        } else {
            let key = PublicKey::from_openssh(line).map_err(|error| {
                anyhow!("{} is not an OpenSSH public key: {error}", path.display())
            })?;
            SshSigner::Key(key.key_data().clone())
        };
        let socket = std::env::var_os(AGENT_SOCKET_ENV)
            .filter(|socket| !socket.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
            anyhow!(
                "{} is an SSH key, and push signs with it through ssh-agent, but {AGENT_SOCKET_ENV} is not set: start ssh-agent and ssh-add the key",
                path.display()
            )
        })?;
        let key = AgentKey {
            fingerprint: fingerprint(signer.key()),
            signer,
            socket,
        };
        key.check_valid_now(crate::sign::now())?;
        key.check_held()?;
        Ok(key)
    }

    /// A certificate outside its validity window would be refused by every
    /// host: said now, not once per host.
    fn check_valid_now(&self, now: u64) -> Result<()> {
        let SshSigner::Certificate(certificate) = &self.signer else {
            return Ok(());
        };
        if now < certificate.valid_after() {
            bail!(
                "the certificate {} is valid only from {} (Unix time), it is now {now}",
                self.fingerprint,
                certificate.valid_after()
            );
        }
        if now >= certificate.valid_before() {
            bail!(
                "the certificate {} expired at {} (Unix time), it is now {now}: have a new one signed",
                self.fingerprint,
                certificate.valid_before()
            );
        }
        Ok(())
    }

    fn connect(&self) -> Result<AgentClient> {
        AgentClient::connect(&self.socket).with_context(|| {
            format!(
                "cannot reach ssh-agent at {} ({AGENT_SOCKET_ENV})",
                self.socket.display()
            )
        })
    }

    fn identity(&self) -> Identity<'static> {
        match &self.signer {
            SshSigner::Key(key) => Identity::from(PublicKey::new(key.clone(), "")),
            SshSigner::Certificate(certificate) => Identity::from((**certificate).clone()),
        }
    }

    /// Fails unless the agent lists this key (or this very certificate).
    fn check_held(&self) -> Result<()> {
        let identities = self
            .connect()?
            .list_all_identities()
            .context("ssh-agent did not list its keys")?;
        let held = identities
            .iter()
            .any(|identity| match (identity, &self.signer) {
                (Identity::PublicKey(key), SshSigner::Key(mine)) => key.key_data() == mine,
                (Identity::Certificate(certificate), SshSigner::Certificate(mine)) => {
                    certificate.as_ref().as_ref() == mine.as_ref()
                }
                _ => false,
            });
        if !held {
            let what = match self.signer {
                SshSigner::Key(_) => "key",
                SshSigner::Certificate(_) => "certificate",
            };
            bail!(
                "ssh-agent does not hold the {what} {}: ssh-add it (a certificate is added with its key when it lies beside it as KEY-cert.pub)",
                self.fingerprint
            );
        }
        Ok(())
    }

    /// Signs `pae` through the agent (a security key asks for its touch
    /// now), as one DSSE signature entry.
    pub fn sign(&self, pae: &[u8]) -> Result<EnvelopeSignature> {
        let data = signed_data(&[], pae);
        eprintln!(
            "push: signing with {} through ssh-agent (a security key waits for a touch)",
            self.fingerprint
        );
        let signature = self
            .connect()?
            .sign_with_ref(&self.identity(), &data)
            .with_context(|| format!("ssh-agent refused to sign with {}", self.fingerprint))?;
        let blob = encode_sshsig(&self.signer, &signature)
            .map_err(|error| anyhow!("cannot encode the agent's signature: {error}"))?;
        // The agent is trusted with nothing: what it answered must verify
        // as a host would verify it.
        Sshsig::parse(&blob)
            .map_err(anyhow::Error::from)
            .and_then(|sshsig| sshsig.verify(pae).map_err(anyhow::Error::from))
            .with_context(|| {
                format!(
                    "ssh-agent's signature with {} does not verify",
                    self.fingerprint
                )
            })?;
        Ok(EnvelopeSignature {
            keyid: self.fingerprint.to_string(),
            sig: SignatureValue::Sshsig(blob),
        })
    }
}
