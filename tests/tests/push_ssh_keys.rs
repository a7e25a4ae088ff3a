//! Deploying with the keys operators already have, against real deployd
//! hosts: an SSH CA and certificates made by real `ssh-keygen`, a real
//! `ssh-agent` that push signs through, and envelopes signed by
//! `ssh-keygen -Y sign` sent to the hosts as they are.

mod support;

use std::path::Path;

use deployd_lab::{Node, DEPLOYD_STATE_DIR};
use deployd_protocol::Action;
use support::deployd::{deploy_message, post, status};
use support::push::{system_at, text, PushLab};
use support::ssh::SshKeys;

/// A host's `[[trusted_keys]]` entry for the CA: principals `deployer`
/// (every host) and `deployer@HOST` (this one), permissions `may`.
fn trust_ca(keys: &SshKeys, host: &Node, may: &str) -> String {
    format!(
        "\n[[trusted_keys]]\nssh_ca = \"{}\"\nprincipals = [\"deployer\", \"deployer@{}\"]\nmay = [{may}]\n",
        keys.public_line("ca"),
        host.name
    )
}

fn push_with_key(fleet: &PushLab, keys: &SshKeys, key: &Path, args: &[&str]) -> (i32, String) {
    let key = key.to_str().expect("UTF-8 path");
    let mut all = args.to_vec();
    all.extend_from_slice(&["--key", key]);
    let output = fleet.push_with(
        &all,
        &[("SSH_AUTH_SOCK", keys.socket().to_str().expect("UTF-8 path"))],
    );
    let (stdout, stderr) = text(&output);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}\n{stderr}"),
    )
}

/// The summary's reason line for `host` (`HOST: why`).
fn reason_of<'a>(output: &'a str, host: &str) -> &'a str {
    let prefix = format!("{host}: ");
    output
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no reason for {host} in:\n{output}"))
}

/// The envelope `host` stored for deploy `id`, as it was received.
fn stored_envelope(host: &Node, id: &str) -> Vec<u8> {
    let path = host.outside(&format!("{DEPLOYD_STATE_DIR}/deploys/{id}/envelope"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn history_len(fleet: &PushLab, host: &Node) -> usize {
    let url = format!("{}/v1/deploys?limit=100", fleet.lab.deployd_url(host));
    let (code, answer) = support::deployd::get(&url);
    assert_eq!(code, 200, "{answer}");
    answer.as_array().expect("a list of deploys").len()
}

#[test]
fn certificates_deploy_where_their_principals_allow_with_one_signature_per_rollout_or_batch() {
    let keys = SshKeys::new();
    keys.keygen("ca");
    let fleet = PushLab::trusting(2, |host| trust_ca(&keys, host, "\"deploy\", \"read\""));
    let lab = &fleet.lab;
    let (one, two) = (lab.hosts()[0].clone(), lab.hosts()[1].clone());

    // A certificate for one host deploys there, and the other refuses it.
    keys.keygen("alice");
    let alice = keys.certify(
        "ca",
        "alice",
        &format!("deployer@{}", one.name),
        "-5m:+1h",
        &[],
    );
    keys.add("alice");
    let rev = lab.flake().head().expect("head");
    let (code, output) = push_with_key(&fleet, &keys, &alice, &["--host", &one.name]);
    assert_eq!(code, 0, "{output}");
    let first = system_at(lab.flake().dir(), &rev, &one.name);
    assert_eq!(one.current_system(), Some(first.clone()));
    let (code, output) = push_with_key(&fleet, &keys, &alice, &["--host", &two.name]);
    assert_eq!(code, 1, "{output}");
    let refused = reason_of(&output, &two.name);
    assert!(
        refused.contains("forbidden") && refused.contains("principal"),
        "{output}"
    );
    assert_eq!(
        two.current_system(),
        None,
        "nothing changed on {}",
        two.name
    );

    // A certificate for every host: one signature for the whole rollout.
    keys.keygen("fleet");
    let fleet_cert = keys.certify("ca", "fleet", "deployer", "-5m:+1h", &[]);
    keys.add("fleet");
    let mut fleet = fleet;
    let new = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let before = keys.sign_requests();
    let (code, output) = push_with_key(&fleet, &keys, &fleet_cert, &["--all", &new]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        keys.sign_requests() - before,
        1,
        "the agent signs once for both hosts:\n{output}"
    );
    let lab = &fleet.lab;
    let mut envelopes = Vec::new();
    for host in [&one, &two] {
        let expected = system_at(lab.flake().dir(), &new, &host.name);
        assert_eq!(host.current_system(), Some(expected), "{}", host.name);
        let deploy = status(lab, host).current_deploy.expect("current deploy");
        envelopes.push((
            host.clone(),
            deploy.deploy_id.to_string(),
            stored_envelope(host, deploy.deploy_id.as_str()),
        ));
    }
    assert_eq!(
        envelopes[0].2, envelopes[1].2,
        "one message serves both hosts"
    );

    // Real OpenSSH verifies what push signed, as the CA's certificate.
    let allowed = format!("deployer cert-authority {}\n", keys.public_line("ca"));
    assert!(keys.ssh_keygen_verifies(&envelopes[0].2, &allowed, "deployer"));
    let other_ca = format!("deployer cert-authority {}\n", keys.public_line("alice"));
    assert!(!keys.ssh_keygen_verifies(&envelopes[0].2, &other_ca, "deployer"));

    // Sent again, the message starts nothing new on either host.
    for (host, id, envelope) in &envelopes {
        let deploys = history_len(&fleet, host);
        let url = format!("{}/v1/deploy", lab.deployd_url(host));
        let (code, answer) = post(&url, envelope.clone());
        assert_eq!(code, 202, "{answer}");
        assert_eq!(answer["deploy_id"].as_str(), Some(id.as_str()), "{answer}");
        assert_eq!(history_len(&fleet, host), deploys, "{}", host.name);
    }

    // The CA's `may` lacks rollback: its certificates cannot roll back.
    let (code, output) = push_with_key(
        &fleet,
        &keys,
        &fleet_cert,
        &["rollback", "--host", &one.name],
    );
    assert_eq!(code, 1, "{output}");
    assert!(
        reason_of(&output, &one.name).contains("forbidden"),
        "{output}"
    );
    assert_eq!(
        one.current_system(),
        Some(system_at(lab.flake().dir(), &new, &one.name))
    );

    // In batches, one signature per batch, each when its batch starts: a
    // canary and one batch after it, two touches, two messages.
    let newer = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let before = keys.sign_requests();
    let (code, output) = push_with_key(
        &fleet,
        &keys,
        &fleet_cert,
        &["--all", "--canary", "1", &newer],
    );
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        keys.sign_requests() - before,
        2,
        "the agent signs once per batch:\n{output}"
    );
    let lab = &fleet.lab;
    let mut batches = Vec::new();
    for host in [&one, &two] {
        let expected = system_at(lab.flake().dir(), &newer, &host.name);
        assert_eq!(host.current_system(), Some(expected), "{}", host.name);
        let deploy = status(lab, host).current_deploy.expect("current deploy");
        batches.push(stored_envelope(host, deploy.deploy_id.as_str()));
    }
    assert_ne!(batches[0], batches[1], "each batch has its own message");
}

#[test]
fn what_ssh_keygen_signs_is_judged_by_the_certificate_and_refusals_change_nothing() {
    let keys = SshKeys::new();
    keys.keygen("ca");
    keys.keygen("alice");
    let alice_line = keys.public_line("alice");
    let fleet = PushLab::trusting(1, |host| {
        format!(
            "{}\n[[trusted_keys]]\nssh = \"{alice_line}\"\nmay = [\"deploy\", \"read\"]\n",
            trust_ca(&keys, host, "\"deploy\", \"rollback\", \"read\"")
        )
    });
    let lab = &fleet.lab;
    let host = lab.hosts()[0].clone();

    // A plain SSH key in the agent deploys.
    keys.add("alice");
    let (code, output) = push_with_key(&fleet, &keys, &keys.path("alice.pub"), &["--all"]);
    assert_eq!(code, 0, "{output}");
    let rev = lab.flake().head().expect("head");
    let system = system_at(lab.flake().dir(), &rev, &host.name);
    assert_eq!(host.current_system(), Some(system.clone()));

    // An envelope signed by `ssh-keygen -Y sign` with a valid certificate
    // is accepted (the system is already active: it succeeds at once).
    let url = format!("{}/v1/deploy", lab.deployd_url(&host));
    keys.keygen("good");
    let good = keys.certify("ca", "good", "deployer", "-5m:+1h", &[]);
    keys.add("good");
    let message = deploy_message(&host, "ssh-keygen-signed", &system, Action::Switch);
    let (code, answer) = post(&url, keys.envelope_signed_by_ssh_keygen(&message, &good));
    assert_eq!(code, 202, "{answer}");

    // Each certificate outside the rules is refused with its code.
    keys.keygen("other-ca");
    let cases: [(&str, &str, &str, &[&str], &str); 5] = [
        ("expired", "ca", "20200101:20200102", &[], "expired"),
        ("early", "ca", "+1d:+2d", &[], "not_yet_valid"),
        ("host", "ca", "-5m:+1h", &["-h"], "forbidden"),
        ("stranger", "other-ca", "-5m:+1h", &[], "unknown_key"),
        (
            "critical",
            "ca",
            "-5m:+1h",
            &["-O", "critical:no-such-option@example.com=1"],
            "forbidden",
        ),
    ];
    let deploys = history_len(&fleet, &host);
    for (name, ca, validity, extra, code) in cases {
        keys.keygen(name);
        let certificate = keys.certify(ca, name, "deployer", validity, extra);
        keys.add(name);
        let message = deploy_message(&host, &format!("refused-{name}"), &system, Action::Switch);
        let (status, answer) = post(
            &url,
            keys.envelope_signed_by_ssh_keygen(&message, &certificate),
        );
        assert_eq!(
            answer["error"].as_str(),
            Some(code),
            "{name}: {status} {answer}"
        );
        assert!(status == 401 || status == 403, "{name}: {status}");
    }
    assert_eq!(
        history_len(&fleet, &host),
        deploys,
        "a refusal records nothing"
    );
    assert_eq!(host.current_system(), Some(system));

    // push itself refuses, in one line and with exit status 2: an expired
    // certificate, a key the agent does not hold, no agent at all.
    let expired = keys.path("expired-cert.pub");
    let (code, output) = push_with_key(&fleet, &keys, &expired, &["--all"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("expired"), "{output}");
    keys.keygen("absent");
    let (code, output) = push_with_key(&fleet, &keys, &keys.path("absent.pub"), &["--all"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("does not hold"), "{output}");
    let output = fleet.push_with(
        &[
            "--key",
            keys.path("alice.pub").to_str().expect("path"),
            "--all",
        ],
        &[("SSH_AUTH_SOCK", "")],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("ssh-agent"), "{stderr}");
}
