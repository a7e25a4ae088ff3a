//! deployd and real OpenSSH agree on SSHSIG, both ways.
//!
//! OpenSSH to deployd: a certificate made by `ssh-keygen -s`, held by a real
//! `ssh-agent`, signs the PAE bytes with `ssh-keygen -Y sign -n deployd`;
//! wrapped in an envelope, it is accepted by a host that trusts the CA; a
//! plain key's `ssh-keygen -Y sign` by a host that trusts its line.
//!
//! deployd to OpenSSH: the SSHSIG deployd's code builds (`signed_data`,
//! `encode_sshsig`), armored, is verified by `ssh-keygen -Y verify` over
//! the PAE bytes, for plain keys, software security keys and certificates
//! (one from a CA on a security key). A security key's signature made
//! without a touch is refused by deployd; `ssh-keygen -Y verify` (OpenSSH
//! 9.2) does not check the flags, it only logs them, and the log shows it
//! reads from deployd's blob the flags deployd reads.
//!
//! Needs `ssh-keygen`, `ssh-agent` and `ssh-add` on `PATH`: a test fails
//! without them under `CI=true`, and is skipped with a note otherwise.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use deployd_protocol::ssh::{
    encode_sshsig, signed_data, SshSigner, Sshsig, TrustedSshCa, TrustedSshKey,
};
use deployd_protocol::{pre_authentication_encoding, Message, Permissions, PAYLOAD_TYPE};

#[path = "support/openssh.rs"]
mod openssh;

// Each test binary uses part of the shared fixture.
#[allow(dead_code, unused_imports)]
#[path = "threats/ssh_fixture/mod.rs"]
mod ssh_fixture;

use openssh::{armor, dearmor, openssh, openssh_present, run, run_ok, Agent};
use ssh_fixture::{
    deploy_message_at, ecdsa_key, ed25519_key, envelope_with, openssh_line, Authenticator,
    CertificateSpec, SshHost, SshIdentity,
};
use ssh_key::public::KeyData;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A temporary directory of OpenSSH keys.
struct KeyDir(tempfile::TempDir);

impl KeyDir {
    fn new() -> KeyDir {
        KeyDir(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// `ssh-keygen -t ed25519`: NAME and NAME.pub.
    fn generate(&self, name: &str) -> PathBuf {
        let key = self.path(name);
        run_ok(
            openssh("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key),
        );
        key
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read a key file")
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a file");
        path
    }
}

/// The `SHA256:` fingerprint `ssh-keygen -l` prints for a public key.
fn openssh_fingerprint(public_key: &Path) -> String {
    let line = run_ok(
        openssh("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(public_key),
    );
    line.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {line}"))
        .to_owned()
}

/// `message`'s payload and PAE, the PAE also in the file `pae`.
fn payload_and_pae(keys: &KeyDir, message: &Message) -> (Vec<u8>, PathBuf) {
    let payload = message.to_payload_bytes();
    let pae = keys.write("pae", &pre_authentication_encoding(PAYLOAD_TYPE, &payload));
    (payload, pae)
}

#[test]
fn a_certificate_signature_made_by_ssh_keygen_through_ssh_agent_is_accepted() {
    if !openssh_present("certificate through ssh-agent") {
        return;
    }
    let keys = KeyDir::new();
    let ca = keys.generate("ca");
    let key = keys.generate("key");
    run_ok(
        openssh("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-I", "alice@kelyus", "-n", "deployer", "-V", "-5m:+1h"])
            .arg(keys.path("key.pub")),
    );
    let agent = Agent::start(keys.0.path());
    run_ok(agent.command("ssh-add").arg(&key));
    // Only the agent can sign from here on.
    std::fs::remove_file(&key).expect("remove the private key");

    let now = unix_now();
    let message = deploy_message_at("sambirano", now);
    let (payload, pae) = payload_and_pae(&keys, &message);
    run_ok(
        agent
            .command("ssh-keygen")
            .args(["-Y", "sign", "-n", "deployd", "-f"])
            .arg(keys.path("key-cert.pub"))
            .arg(&pae),
    );
    let keyid = openssh_fingerprint(&keys.path("key.pub"));
    let blob = dearmor(&keys.read("pae.sig"));
    let sshsig = Sshsig::parse(&blob).expect("ssh-keygen's SSHSIG");
    assert!(matches!(sshsig.signer, SshSigner::Certificate(_)));
    let bytes = envelope_with(&keyid, PAYLOAD_TYPE, payload, blob);

    let principals = vec!["deployer".to_owned(), "deployer@sambirano".to_owned()];
    let trusted = TrustedSshCa::parse(&keys.read("ca.pub"), principals, Permissions::ALL)
        .expect("ssh-keygen's CA line");
    let mut host = SshHost::new("sambirano", vec![], vec![trusted]);
    host.clock.set(now);
    let verified = host
        .verify_deploy(&bytes)
        .unwrap_or_else(|error| panic!("{}", error.message()));
    assert_eq!(verified.key.as_str(), keyid);
    assert_eq!(verified.message, message);
    drop(agent);
}

#[test]
fn a_plain_key_signature_made_by_ssh_keygen_is_accepted() {
    if !openssh_present("plain key") {
        return;
    }
    let keys = KeyDir::new();
    let key = keys.generate("key");
    let message = deploy_message_at("sambirano", ssh_fixture::NOW);
    let (payload, pae) = payload_and_pae(&keys, &message);
    run_ok(
        openssh("ssh-keygen")
            .args(["-Y", "sign", "-n", "deployd", "-f"])
            .arg(&key)
            .arg(&pae),
    );
    let keyid = openssh_fingerprint(&keys.path("key.pub"));
    let bytes = envelope_with(
        &keyid,
        PAYLOAD_TYPE,
        payload,
        dearmor(&keys.read("pae.sig")),
    );
    let trusted = TrustedSshKey::parse(&keys.read("key.pub"), Permissions::ALL)
        .expect("ssh-keygen's key line");
    let mut host = SshHost::new("sambirano", vec![trusted], vec![]);
    let verified = host
        .verify_deploy(&bytes)
        .unwrap_or_else(|error| panic!("{}", error.message()));
    assert_eq!(verified.key.as_str(), keyid);
    assert_eq!(verified.message, message);
}

/// The SSHSIG deployd's own code makes for `identity` over `pae`.
fn deployd_sshsig(identity: &SshIdentity, pae: &[u8]) -> Vec<u8> {
    let signer = match &identity.certificate {
        Some(certificate) => SshSigner::Certificate(Box::new(certificate.clone())),
        None => SshSigner::Key(identity.key.public_key()),
    };
    let signature = identity.key.sign(&signed_data(&[], pae));
    encode_sshsig(&signer, &signature).expect("deployd encodes its SSHSIG")
}

/// Who deployd signs as, and the `allowed_signers` line (principal,
/// options, key) that makes `ssh-keygen` accept them.
struct Signer {
    what: &'static str,
    identity: SshIdentity,
    principal: &'static str,
    allowed: String,
}

/// A key allowed by its own line.
fn plain(what: &'static str, identity: SshIdentity) -> Signer {
    let allowed = format!(
        "alice@kelyus namespaces=\"deployd\" {}",
        openssh_line(&identity.key.public_key())
    );
    Signer {
        what,
        identity,
        principal: "alice@kelyus",
        allowed,
    }
}

/// A certified key, allowed by its CA's `cert-authority` line.
fn certified(what: &'static str, identity: SshIdentity, ca: &KeyData) -> Signer {
    let allowed = format!(
        "deployer cert-authority,namespaces=\"deployd\" {}",
        openssh_line(ca)
    );
    Signer {
        what,
        identity,
        principal: "deployer",
        allowed,
    }
}

/// What `ssh-keygen -vv -Y verify` says of `blob` over `pae`, for the
/// signer's principal and `allowed_signers` line (`-vv`: it logs the
/// security-key flags it read).
fn ssh_keygen_verify(blob: &[u8], pae: &[u8], signer: &Signer) -> std::process::Output {
    let keys = KeyDir::new();
    let signature = keys.write("pae.sig", armor(blob).as_bytes());
    let allowed_signers = keys.write(
        "allowed_signers",
        format!("{}\n", signer.allowed).as_bytes(),
    );
    run(
        openssh("ssh-keygen")
            .args(["-vv", "-Y", "verify", "-n", "deployd", "-s"])
            .arg(signature)
            .args(["-I", signer.principal, "-f"])
            .arg(allowed_signers),
        pae,
    )
}

/// Every kind of signer deployd takes, certificates valid around `now`.
fn signers(now: u64) -> Vec<Signer> {
    let spec = CertificateSpec {
        valid_after: now - 300,
        valid_before: now + 3600,
        ..CertificateSpec::default()
    };
    let ed25519_ca = ed25519_key();
    let fido_ca = Authenticator::ecdsa();
    vec![
        plain("ssh-ed25519", SshIdentity::plain(ed25519_key())),
        plain("ecdsa-sha2-nistp256", SshIdentity::plain(ecdsa_key())),
        plain(
            "sk-ssh-ed25519",
            SshIdentity::security(Authenticator::ed25519()),
        ),
        plain(
            "sk-ecdsa-sha2-nistp256",
            SshIdentity::security(Authenticator::ecdsa()),
        ),
        certified(
            "ssh-ed25519 certificate from an ssh-ed25519 CA",
            SshIdentity::plain(ed25519_key()).certified(&ed25519_ca, &spec),
            ed25519_ca.public_key().key_data(),
        ),
        certified(
            "sk-ssh-ed25519 certificate from an sk-ecdsa-sha2-nistp256 CA (a FIDO CA)",
            SshIdentity::security(Authenticator::ed25519()).certified(&fido_ca, &spec),
            &fido_ca.public_key(),
        ),
    ]
}

#[test]
fn ssh_keygen_verifies_what_deployd_signs() {
    if !openssh_present("ssh-keygen -Y verify") {
        return;
    }
    let now = unix_now();
    let message = deploy_message_at("sambirano", now);
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &message.to_payload_bytes());
    for signer in signers(now) {
        let blob = deployd_sshsig(&signer.identity, &pae);
        let output = ssh_keygen_verify(&blob, &pae, &signer);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("Good \"deployd\" signature"),
            "{}: {} {stdout} {}",
            signer.what,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // The same blob over other bytes: ssh-keygen really checks.
        let mut other = pae.clone();
        other.push(b' ');
        let output = ssh_keygen_verify(&blob, &other, &signer);
        assert!(
            !output.status.success(),
            "{}: other bytes verified",
            signer.what
        );
    }
}

/// `ssh-keygen -Y verify` checks no flag: it only logs them (OpenSSH 9.2's
/// `sig_verify`; sshd checks them, for logins), and takes an untouched
/// signature. So the refusal is deployd's own: this proves OpenSSH reads
/// from deployd's blob the flags deployd reads, and that deployd refuses
/// what `ssh-keygen -Y verify` lets through.
#[test]
fn a_signature_without_a_touch_is_refused_by_deployd_where_ssh_keygen_only_logs_it() {
    if !openssh_present("no touch") {
        return;
    }
    let message = deploy_message_at("sambirano", ssh_fixture::NOW);
    let payload = message.to_payload_bytes();
    let pae = pre_authentication_encoding(PAYLOAD_TYPE, &payload);
    for make in [Authenticator::ed25519, Authenticator::ecdsa] {
        let mut signer = plain("security key", SshIdentity::security(make()));
        let public = signer.identity.key.public_key();
        for (flags, accepted) in [(0x00, false), (ssh_fixture::USER_PRESENT, true)] {
            signer.identity.set_flags(flags);
            let blob = deployd_sshsig(&signer.identity, &pae);
            let output = ssh_keygen_verify(&blob, &pae, &signer);
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(log.contains(&format!("flags = 0x{flags:02x}")), "{log}");
            // OpenSSH 9.2 takes both; only the touched one must pass there.
            assert!(output.status.success() || !accepted, "ssh-keygen: {log}");

            let mut host = ssh_fixture::key_host("sambirano", &public, "", Permissions::ALL);
            let keyid = signer.identity.fingerprint();
            let bytes = envelope_with(&keyid, PAYLOAD_TYPE, payload.clone(), blob);
            match host.verify_deploy(&bytes) {
                Ok(_) => assert!(accepted, "deployd took an untouched signature"),
                Err(error) => {
                    assert!(!accepted, "{}", error.message());
                    assert_eq!(error.code().as_str(), "forbidden", "{}", error.message());
                }
            }
        }
    }
}
