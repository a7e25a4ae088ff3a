//! A lab host whose deployd has `[tls]` (a certificate for its address from
//! a CA made by `openssl`, in the host's own `/var/lib`) serves HTTPS only:
//! a client that trusts the CA deploys to it with a signed request and
//! follows the deploy to its end, while plain HTTP gets no answer. The
//! deploy's health check is deployd's own `https://` address, trusted
//! through `[health] ca_file`; reloaded without `ca_file`, the next
//! deploy's check fails because the certificate does not verify, and the
//! deploy rolls back, saying so.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use deployd_lab::tls::TestCa;
use deployd_lab::DEPLOYD_PORT;
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::Action;
use support::deployd::{deploy_message, journal, trusted, OneHost};

/// Where the host keeps its certificate, key and CA, seen on the host.
const TLS_DIR: &str = "/var/lib/deployd-tls";

/// An HTTPS client that trusts the lab's CA alone.
fn client(ca: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).expect("CA");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// deployd's config past its keys and cache: `[tls]`, and a health check
/// of its own HTTPS address, with the lab's CA as `ca_file` or not.
fn tls_config(url: &str, trust_ca: bool) -> String {
    let ca_file = if trust_ca {
        format!("ca_file = \"{TLS_DIR}/ca.pem\"\n")
    } else {
        String::new()
    };
    format!(
        "\n[tls]\ncert_file = \"{TLS_DIR}/cert.pem\"\nkey_file = \"{TLS_DIR}/key.pem\"\n\
         \n[health]\nhttp = [\"{url}/healthz\"]\n{ca_file}deadline_s = 5\ninterval_s = 1\n"
    )
}

/// Sends a signed deploy of `system` over HTTPS and follows it to its end.
fn deploy(
    one: &OneHost,
    https: &reqwest::blocking::Client,
    url: &str,
    (id, system): (&str, &str),
) -> DeployRecord {
    let message = deploy_message(&one.host, id, system, Action::Switch);
    let response = https
        .post(format!("{url}/v1/deploy"))
        .body(message.sign(&[&one.ops]).to_json())
        .send()
        .expect("POST over HTTPS");
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.text());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let record: DeployRecord = https
            .get(format!("{url}/v1/deploys/{id}"))
            .send()
            .expect("GET over HTTPS")
            .json()
            .expect("a record");
        if record.state.is_final() {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "deploy {id} did not end: {record:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_client_that_trusts_the_ca_deploys_over_https() {
    let mut one = OneHost::up();
    let address = one.host.address.to_string();
    let ca = TestCa::new("deployd-lab-ca").expect("CA");
    let identity = ca
        .issue(&one.host.name, &[one.host.address.into()])
        .expect("certificate");
    let on_host = one.host.outside(TLS_DIR);
    std::fs::create_dir_all(&on_host).expect("the host's TLS folder");
    std::fs::copy(ca.certificate(), on_host.join("ca.pem")).expect("copy");
    std::fs::copy(&identity.certificate, on_host.join("cert.pem")).expect("copy");
    std::fs::copy(&identity.key, on_host.join("key.pem")).expect("copy");
    let url = format!("https://{address}:{DEPLOYD_PORT}");
    let keys = [trusted(&one.ops, None)];
    one.lab
        .write_deployd_config(&one.host, &keys, &tls_config(&url, true))
        .expect("config");
    // Turning TLS on takes a restart.
    one.lab
        .start_deployd(&one.host)
        .expect("deployd over HTTPS");
    assert!(
        journal(&one.host).contains("(https) listening on"),
        "{}",
        journal(&one.host)
    );

    let https = client(ca.certificate());
    let answer = https
        .get(format!("{url}/healthz"))
        .send()
        .expect("GET /healthz over HTTPS");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().expect("body").trim(), "ok");
    // Plain HTTP gets nothing: the handshake fails and the connection ends.
    let plain = reqwest::blocking::Client::new()
        .get(format!("http://{address}:{DEPLOYD_PORT}/healthz"))
        .timeout(Duration::from_secs(10))
        .send();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // A signed deploy over HTTPS; its health check, deployd's own HTTPS
    // address, verifies through ca_file.
    let first = one.head_system();
    let record = deploy(&one, &https, &url, ("over-https", &first));
    assert_eq!(record.state, DeployState::Succeeded, "{record:?}");
    assert!(
        record
            .log_tail
            .iter()
            .any(|line| line.contains("health checks passed")),
        "{:?}",
        record.log_tail
    );

    // Without ca_file the system's roots do not know the lab's CA: the
    // next deploy's health check fails on the certificate and rolls back.
    one.lab
        .write_deployd_config(&one.host, &keys, &tls_config(&url, false))
        .expect("config");
    let reloaded = one
        .host
        .command("systemctl", ["reload", "deployd"])
        .output()
        .expect("systemctl");
    assert!(reloaded.status.success(), "{reloaded:?}");
    assert!(
        support::wait_until(Duration::from_secs(20), || journal(&one.host)
            .contains("reloaded")),
        "{}",
        journal(&one.host)
    );
    let rev = one.lab.flake_mut().commit_changed_system().expect("commit");
    let second = one.system_at(&rev);
    let record = deploy(&one, &https, &url, ("unverified-health", &second));
    assert_eq!(record.state, DeployState::RolledBack, "{record:?}");
    let error = record.error.expect("an error");
    let expected = format!("the certificate of {address} does not verify: UnknownIssuer");
    assert!(error.message.contains(&expected), "{}", error.message);
    assert!(
        record.log_tail.iter().any(|line| line.contains(&expected)),
        "{:?}",
        record.log_tail
    );
}
