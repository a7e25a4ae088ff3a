//! Threats to a host's report as push serve receives it: only the host's
//! pinned host key signs it, over the exact bytes; it names that host (in
//! itself and in its record); it was sent within the window.

use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::{Action, Envelope, HostName, HostReport, SecretKey, REPORT_PAYLOAD_TYPE};

use crate::fixture::{host, NOW, SYSTEM};

fn host_key(name: &str) -> SecretKey {
    SecretKey::generate(name.parse().expect("key name")).expect("random source")
}

fn report(for_host: &str, sent_at: u64) -> HostReport {
    let host: HostName = for_host.parse().expect("host");
    HostReport {
        host: host.clone(),
        sent_at,
        sequence: Some(4),
        record: DeployRecord {
            deploy_id: "pull-4".parse().expect("id"),
            host,
            store_path: SYSTEM.parse().expect("store path"),
            action: Action::Switch,
            flake: None,
            rev: None,
            key: "ops-1".parse().expect("key"),
            issued_at: NOW - 60,
            state: DeployState::Succeeded,
            phases: Vec::new(),
            error: None,
            previous_system: None,
            reboot_required: false,
            log_tail: vec!["switched".to_owned()],
            created_at_ms: (NOW - 50) * 1000,
            finished_at_ms: Some((NOW - 10) * 1000),
        },
    }
}

fn code(result: Result<HostReport, deployd_protocol::ReportError>) -> &'static str {
    match result {
        Ok(report) => panic!("accepted: {report:?}"),
        Err(error) => error.code().as_str(),
    }
}

#[test]
fn a_report_signed_by_the_pinned_host_key_is_read() {
    let key = host_key("sambirano-host");
    let bytes = report("sambirano", NOW).sign(&key).to_json();
    let read = HostReport::verify(&bytes, &host(), &key.public_key(), NOW + 30).expect("verifies");
    assert_eq!(read, report("sambirano", NOW));
}

#[test]
fn a_report_by_another_key_even_of_the_same_name_is_refused() {
    let pinned = host_key("sambirano-host");
    let other = host_key("kelyus-host");
    let bytes = report("sambirano", NOW).sign(&other).to_json();
    assert_eq!(
        code(HostReport::verify(
            &bytes,
            &host(),
            &pinned.public_key(),
            NOW
        )),
        "unknown_key"
    );
    let impostor = host_key("sambirano-host");
    let bytes = report("sambirano", NOW).sign(&impostor).to_json();
    assert_eq!(
        code(HostReport::verify(
            &bytes,
            &host(),
            &pinned.public_key(),
            NOW
        )),
        "bad_signature"
    );
}

#[test]
fn a_tampered_report_does_not_verify() {
    let key = host_key("sambirano-host");
    let signed = report("sambirano", NOW).sign(&key);
    let mut payload = signed.payload().to_vec();
    let at = payload
        .windows(9)
        .position(|w| w == b"succeeded")
        .expect("state");
    payload[at..at + 9].copy_from_slice(b"succeedez");
    let tampered = Envelope::new(REPORT_PAYLOAD_TYPE, payload, signed.signatures().to_vec());
    assert_eq!(
        code(HostReport::verify(
            &tampered.to_json(),
            &host(),
            &key.public_key(),
            NOW
        )),
        "bad_signature"
    );
}

#[test]
fn a_report_for_another_host_or_out_of_time_is_refused() {
    let key = host_key("sambirano-host");
    let mut other = report("sambirano", NOW);
    other.record.host = "kelyus".parse().expect("host");
    let bytes = other.sign(&key).to_json();
    assert_eq!(
        code(HostReport::verify(&bytes, &host(), &key.public_key(), NOW)),
        "wrong_host"
    );
    let bytes = report("kelyus", NOW).sign(&key).to_json();
    assert_eq!(
        code(HostReport::verify(&bytes, &host(), &key.public_key(), NOW)),
        "wrong_host"
    );

    let bytes = report("sambirano", NOW).sign(&key).to_json();
    assert_eq!(
        code(HostReport::verify(
            &bytes,
            &host(),
            &key.public_key(),
            NOW + 3600
        )),
        "expired"
    );
    assert_eq!(
        code(HostReport::verify(
            &bytes,
            &host(),
            &key.public_key(),
            NOW - 3600
        )),
        "not_yet_valid"
    );
}
