//! push's pre-send cache check reads an `https://` cache: the hosts pull
//! from the builder's cache over HTTPS only (its certificate from the
//! test's CA, which their Nix trusts through `NIX_SSL_CERT_FILE` in
//! deployd's unit: a drop-in, as a site would add one), and push
//! trusts that CA through push.toml's `ca_file`. A system the cache lacks
//! stops push (exit 2, no deploy sent, no host touched); one it holds goes
//! out and deploys. Without the CA, push cannot read the cache: it says so,
//! naming the certificate check that failed, warns and sends.

mod support;

use deployd_lab::tls::TestCa;
use deployd_lab::{Lab, Node, DEPLOYD_CONFIG};
use support::deployd::status;
use support::push::{system_at, text, PushLab};

/// Where a host's Nix finds the CA, inside the host.
const HOST_CA: &str = "/etc/nix/lab-cache-ca.pem";

/// Makes `host` pull from `url` alone (deployd's `[nix] substituters`, and
/// its Nix's), trusting `ca` as well, and restarts its deployd.
fn pull_from(lab: &mut Lab, host: &Node, url: &str, ca: &TestCa) {
    std::fs::copy(ca.certificate(), host.outside(HOST_CA)).expect("CA on the host");
    let plain = lab.cache_url();
    let config = host.outside(DEPLOYD_CONFIG);
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains(&plain), "{text}");
    std::fs::write(&config, text.replace(&plain, url)).expect("config");
    let nix_conf = host.outside("/etc/nix/nix.conf");
    let text = std::fs::read_to_string(&nix_conf).expect("nix.conf");
    std::fs::write(&nix_conf, text.replace(&plain, url)).expect("nix.conf");
    // Nix 2.8 has no `ssl-cert-file` setting; the variable works in every
    // version, and deployd's Nix inherits it. The drop-in is written inside
    // the host, in its own /etc/systemd/system (a host with systemd has
    // one; one without would see this machine's).
    assert!(host.pid1.is_some(), "the host runs systemd");
    host.sh(&format!(
        "mkdir -p /etc/systemd/system/deployd.service.d && \
         printf '[Service]\\nEnvironment=NIX_SSL_CERT_FILE={HOST_CA}\\n' \
         > /etc/systemd/system/deployd.service.d/lab-ca.conf && systemctl daemon-reload"
    ))
    .expect("a drop-in for deployd.service");
    lab.start_deployd(host).expect("deployd restarted");
}

/// push.toml with `[defaults]` `extra`, without `copy_to` and
/// `sign_key_file` unless `copy` (then push copies the system there).
fn inventory(fleet: &PushLab, extra: &str, copy: bool) {
    fleet.lab.write_push_inventory(extra).expect("inventory");
    if copy {
        return;
    }
    let path = fleet.lab.flake().dir().join("push.toml");
    let text = std::fs::read_to_string(&path).expect("inventory");
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("copy_to = ") && !line.starts_with("sign_key_file = "))
        .collect();
    std::fs::write(&path, kept.join("\n")).expect("inventory");
}

#[test]
fn the_check_reads_an_https_cache_through_the_ca_file() {
    let mut fleet = PushLab::up(1);
    let ca = TestCa::new("cache test CA").expect("CA");
    let builder = fleet.lab.builder().address.into();
    let identity = ca.issue("cache", &[builder]).expect("certificate");
    let url = fleet.lab.start_https_cache(&identity).expect("HTTPS cache");
    let host = fleet.lab.hosts()[0].clone();
    pull_from(&mut fleet.lab, &host, &url, &ca);
    assert_eq!(
        status(&fleet.lab, &host).substituters,
        std::slice::from_ref(&url)
    );
    std::fs::copy(
        ca.certificate(),
        fleet.lab.flake().dir().join("cache-ca.pem"),
    )
    .expect("CA");
    let with_ca = "ca_file = \"cache-ca.pem\"";

    // The system is not in the cache: refused before anything is sent.
    inventory(&fleet, with_ca, false);
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let last = stderr.lines().last().expect("a line");
    assert!(
        last.contains(&format!("is in none of the caches it pulls from ({url})"))
            && last.ends_with("no deploy was sent"),
        "{stderr}"
    );
    let status = status(&fleet.lab, &host);
    assert_eq!((status.last_deploy, status.active_deploy), (None, None));
    assert!(host.switch_log().expect("switch log").is_empty());

    // push copies it there (signed): the check passes, and the host
    // fetches it over HTTPS.
    inventory(&fleet, with_ca, true);
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    // The cache was read: no "cannot tell" warning (the work tree's own
    // warning, for the inventory the test rewrote, is not about the cache).
    assert!(!stderr.contains("cannot tell whether"), "{stderr}");
    let rev = fleet.lab.flake().head().expect("head");
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );

    // Without the CA push cannot read the cache, which it says, naming the
    // check that failed; it cannot rule the path out, so it warns and sends.
    fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    inventory(&fleet, "", false);
    let output = fleet.push(&["--all"]);
    let (stdout, stderr) = text(&output);
    assert_ne!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let warning = stderr
        .lines()
        .find(|line| line.starts_with("push: warning: cannot tell whether"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains(&format!("{url}: certificate not trusted (UnknownIssuer)"))
            && warning.ends_with("sending anyway"),
        "{warning}"
    );
}
