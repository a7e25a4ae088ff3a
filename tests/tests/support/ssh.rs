//! The keys operators already have, made by real OpenSSH: an SSH CA and
//! user keys by `ssh-keygen`, certificates by `ssh-keygen -s`, a real
//! `ssh-agent` holding them (its debug log counts the signatures asked of
//! it), and envelopes signed by `ssh-keygen -Y sign -n deployd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use deployd_lab::ssh_agent::SshAgent;
use deployd_protocol::{pre_authentication_encoding, Message, PAYLOAD_TYPE};

/// Runs `command`; panics with its output when it fails.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("run an OpenSSH tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A directory of keys and certificates, and an agent that holds some.
pub struct SshKeys {
    // Declared first: the agent stops before its directory goes.
    agent: SshAgent,
    dir: tempfile::TempDir,
}

impl SshKeys {
    /// A fresh directory and a running `ssh-agent -d` (its log counts
    /// the signatures asked of it).
    pub fn new() -> SshKeys {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = SshAgent::start(dir.path()).expect("ssh-agent (openssh-client) runs");
        SshKeys { agent, dir }
    }

    /// The agent's socket, for `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        self.agent.socket()
    }

    /// The path of `name` in the key directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes the Ed25519 key pair `name` (`name` and `name.pub`).
    pub fn keygen(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path));
        path
    }

    /// The public key line of key `name`.
    pub fn public_line(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.pub")))
            .expect("public key")
            .trim()
            .to_owned()
    }

    /// Has CA `ca` certify key `key` as `KEY-cert.pub`: `ssh-keygen -s CA
    /// -I ID -n PRINCIPALS -V VALIDITY` plus `extra` options (`-h` for a
    /// host certificate, `-O critical:...`).
    pub fn certify(
        &self,
        ca: &str,
        key: &str,
        principals: &str,
        validity: &str,
        extra: &[&str],
    ) -> PathBuf {
        run(Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(self.path(ca))
            .args(["-I", key, "-n", principals, "-V", validity])
            .args(extra)
            .arg(self.path(&format!("{key}.pub"))));
        self.path(&format!("{key}-cert.pub"))
    }

    /// `ssh-add`s key `name` (and its certificate, when there is one).
    pub fn add(&self, name: &str) {
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(self.path(name))
            .env("SSH_AUTH_SOCK", self.socket()));
    }

    /// How many signatures the agent was asked for so far.
    pub fn sign_requests(&self) -> usize {
        self.agent.sign_requests()
    }

    /// An envelope of `message` signed by real `ssh-keygen -Y sign -n
    /// deployd` with `public` (a key or certificate the agent holds).
    pub fn envelope_signed_by_ssh_keygen(&self, message: &Message, public: &Path) -> Vec<u8> {
        let payload = message.to_payload_bytes();
        let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
        let data = self.path("pae");
        std::fs::write(&data, &pae).expect("write PAE");
        let _ = std::fs::remove_file(self.path("pae.sig"));
        run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "deployd", "-f"])
            .arg(public)
            .arg(&data)
            .env("SSH_AUTH_SOCK", self.socket()));
        let armored = std::fs::read_to_string(self.path("pae.sig")).expect("signature");
        let blob: String = armored
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let keyid = fingerprint(public);
        serde_json::to_vec(&serde_json::json!({
            "payloadType": PAYLOAD_TYPE,
            "payload": STANDARD.encode(&payload),
            "signatures": [{"keyid": keyid, "sig": blob}],
        }))
        .expect("JSON")
    }

    /// `ssh-keygen -Y verify` of the SSH signature in `envelope` over its
    /// PAE bytes, for `identity` as `allowed_signers` names it.
    pub fn ssh_keygen_verifies(
        &self,
        envelope: &[u8],
        allowed_signers: &str,
        identity: &str,
    ) -> bool {
        let json: serde_json::Value = serde_json::from_slice(envelope).expect("envelope JSON");
        let payload = STANDARD
            .decode(json["payload"].as_str().expect("payload"))
            .expect("base64");
        let payload_type = json["payloadType"].as_str().expect("payloadType");
        let blob = json["signatures"][0]["sig"].as_str().expect("sig");
        let mut armored = String::from("-----BEGIN SSH SIGNATURE-----\n");
        for line in blob.as_bytes().chunks(70) {
            armored.push_str(std::str::from_utf8(line).expect("base64"));
            armored.push('\n');
        }
        armored.push_str("-----END SSH SIGNATURE-----\n");
        std::fs::write(self.path("check.sig"), armored).expect("signature");
        std::fs::write(self.path("allowed_signers"), allowed_signers).expect("allowed signers");
        let mut child = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "deployd", "-I", identity, "-s"])
            .arg(self.path("check.sig"))
            .arg("-f")
            .arg(self.path("allowed_signers"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh-keygen");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&pre_authentication_encoding(payload_type, &payload))
            .expect("write PAE");
        child
            .wait_with_output()
            .expect("ssh-keygen")
            .status
            .success()
    }
}

/// The `SHA256:` fingerprint of a public key or certificate file.
pub fn fingerprint(public: &Path) -> String {
    let text = std::fs::read_to_string(public).expect("public key");
    let line = text.trim();
    let key = if line.contains("-cert-v01@openssh.com") {
        ssh_key::Certificate::from_openssh(line)
            .expect("certificate")
            .public_key()
            .clone()
    } else {
        ssh_key::PublicKey::from_openssh(line)
            .expect("public key")
            .key_data()
            .clone()
    };
    deployd_protocol::ssh::fingerprint(&key).to_string()
}
