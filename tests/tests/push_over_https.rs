//! The real `push` against lab hosts whose deployd has `[tls]` (a
//! certificate for each host's address from a CA made by `openssl`): with
//! `tls = true` and the CA as `ca_file` in push.toml, `push` deploys, and
//! `push status` and `push log` read the hosts, over HTTPS only; without
//! the CA, push refuses in one line naming the host and the certificate's
//! fault, and touches nothing.

mod support;

use deployd_lab::tls::TestCa;
use deployd_lab::DEPLOYD_PORT;
use support::push::PushLab;

/// Where each host keeps its certificate and key, seen on the host.
const TLS_DIR: &str = "/var/lib/deployd-tls";

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn push_deploys_reads_status_and_logs_over_https_only() {
    let ca = TestCa::new("deployd-lab-ca").expect("CA");
    // Each host's deployd serves HTTPS with a certificate for its address.
    let push = PushLab::trusting(2, |host| {
        let identity = ca
            .issue(&host.name, &[host.address.into()])
            .expect("certificate");
        let on_host = host.outside(TLS_DIR);
        std::fs::create_dir_all(&on_host).expect("the host's TLS folder");
        std::fs::copy(&identity.certificate, on_host.join("cert.pem")).expect("copy");
        std::fs::copy(&identity.key, on_host.join("key.pem")).expect("copy");
        format!("\n[tls]\ncert_file = \"{TLS_DIR}/cert.pem\"\nkey_file = \"{TLS_DIR}/key.pem\"\n")
    });
    let hosts: Vec<String> = push.lab.hosts().iter().map(|h| h.name.clone()).collect();
    let ca_file = ca.certificate().display().to_string();
    push.lab
        .write_push_inventory(&format!("tls = true\nca_file = \"{ca_file}\""))
        .expect("inventory");

    let deployed = push.push(&["--all", "HEAD"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    for host in &hosts {
        assert!(
            text(&deployed)
                .lines()
                .any(|line| line.starts_with(host.as_str()) && line.contains("succeeded")),
            "{}",
            text(&deployed)
        );
    }

    let status = push.push(&["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let answer = String::from_utf8_lossy(&status.stdout);
    for host in push.lab.hosts() {
        let url = format!("https://{}:{DEPLOYD_PORT}", host.address);
        assert!(answer.contains(&url), "{url} not in {answer}");
    }

    let log = push.push(&["log", "--host", &hosts[0]]);
    assert!(log.status.success(), "{}", text(&log));
    assert!(text(&log).contains("https://"), "{}", text(&log));
    assert!(
        text(&log).contains("switch-to-configuration"),
        "{}",
        text(&log)
    );

    // Without the CA the certificate does not verify: one line naming the
    // host's address, nothing sent in clear, exit 1 (unreachable).
    push.lab
        .write_push_inventory("tls = true")
        .expect("inventory");
    let refused = push.push(&["status", "--host", &hosts[0]]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let address = push.lab.hosts()[0].address.to_string();
    assert!(
        text(&refused).lines().any(|line| line.contains(&address)
            && line.contains("certificate not trusted")
            && line.contains("UnknownIssuer")),
        "{}",
        text(&refused)
    );
    let again = push.push(&["--host", &hosts[0], "HEAD"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
}
