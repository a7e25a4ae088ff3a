//! `push serve` fetches over `https://` (the forge stand-in's HTTPS, which
//! wants a user and an access token, as a private repository does) with the
//! login from `[git] username` and `password_file`: a certificate git
//! trusts (`SSL_CERT_FILE`) deploys the push; one it does not trust is
//! refused, and nothing is deployed.

mod support;

use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use support::forge::{Fetch, ForgeFleet};
use support::push::system_at;

#[test]
fn a_push_fetched_over_https_with_a_token_deploys() {
    let fetch = Fetch::Https {
        certificate_trusted: true,
    };
    let mut fleet = ForgeFleet::up_with(1, ForgeKind::GitHub, fetch);
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    assert_eq!(
        statuses.last().map(|status| status.state.as_str()),
        Some("success"),
        "{statuses:?}\n{}",
        fleet.service_log()
    );
    let host = &fleet.lab.hosts()[0];
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &host.name))
    );
    // The repository is private: git itself, without the login, is refused.
    let https = fleet.forge.https_url().expect("HTTPS");
    let anonymous = std::process::Command::new("git")
        .args(["ls-remote", &format!("{https}/ops/fleet.git")])
        .env("GIT_SSL_CAINFO", fleet.ca.certificate())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git ls-remote");
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(!anonymous.status.success(), "{stderr}");
    // git asks for a user only when the server answered 401.
    assert!(stderr.contains("could not read Username"), "{stderr}");
}

#[test]
fn an_untrusted_certificate_is_refused_and_nothing_is_deployed() {
    let fetch = Fetch::Https {
        certificate_trusted: false,
    };
    let mut fleet = ForgeFleet::up_with(1, ForgeKind::GitHub, fetch);
    fleet.push_that_cannot_be_fetched("certificate");
}
