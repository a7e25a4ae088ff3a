//! `systemctl reload deployd` on a lab host (the unit the NixOS module
//! renders, with its `ExecReload`): a newly trusted key takes effect without
//! a restart, and a config deployd would refuse is refused, the running one
//! kept, in the journal.

mod support;

use std::time::Duration;

use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::deployd::{deploy_message, journal, key, post, trusted, wait_for_end, OneHost};

/// The HTTP status of a deploy of `system` signed by `signer`.
fn deploy_status(
    one: &OneHost,
    id: &str,
    system: &str,
    signer: &deployd_protocol::SecretKey,
) -> (u16, serde_json::Value) {
    let url = format!("{}/v1/deploy", one.lab.deployd_url(&one.host));
    let message = deploy_message(&one.host, id, system, Action::Switch);
    post(&url, message.sign(&[signer]).to_json())
}

/// `systemctl reload deployd` on the host.
fn reload(one: &OneHost) {
    let reloaded = one
        .host
        .command("systemctl", ["reload", "deployd"])
        .output()
        .expect("systemctl");
    assert!(reloaded.status.success(), "{reloaded:?}");
}

#[test]
fn a_reload_trusts_a_new_key_and_refuses_a_bad_config() {
    let one = OneHost::up();
    let system = one.head_system();
    let newcomer = key("ops-2");
    let pid = one.lab.deployd_pid(&one.host).expect("deployd runs");
    let (status, answer) = deploy_status(&one, "too-early", &system, &newcomer);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unknown_key"))
    );

    one.lab
        .write_deployd_config(
            &one.host,
            &[trusted(&one.ops, None), trusted(&newcomer, None)],
            "",
        )
        .expect("config");
    reload(&one);
    let accepted = support::wait_until(Duration::from_secs(20), || {
        deploy_status(&one, "after-reload", &system, &newcomer).0 == 202
    });
    assert!(accepted, "the new key was not put in force");
    let record = wait_for_end(&one.lab, &one.host, "after-reload", Duration::from_secs(60));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert_eq!(
        one.lab.deployd_pid(&one.host),
        Some(pid),
        "deployd restarted"
    );

    // A config deployd refuses: the running one stays in force.
    let config = one.host.outside(deployd_lab::DEPLOYD_CONFIG);
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("surprise = true\n{good}")).expect("config");
    reload(&one);
    let refused = support::wait_until(Duration::from_secs(20), || {
        let journal = journal(&one.host);
        journal.contains("refused the changed") && journal.contains("surprise")
    });
    assert!(refused, "the refusal is not in the journal");
    let (status, answer) = deploy_status(&one, "kept", &system, &newcomer);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        one.lab.deployd_pid(&one.host),
        Some(pid),
        "deployd restarted"
    );
}
