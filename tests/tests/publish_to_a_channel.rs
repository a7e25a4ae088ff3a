//! `push publish` writes each pulling host's signed desired state to a
//! channel, on a real lab flake built with real Nix: to an S3 bucket on a
//! real S3-compatible server (moto, read back anonymously as a host reads
//! it), and to a folder. Each state verifies as the host verifies it
//! (`Verifier::verify_desired`, the operator's key from push.toml): it
//! names the host, the revision and the system built at it, and its
//! sequence is one above the one the channel held (1, then 2). A revision
//! that does not descend from the held one is refused (exit 1, the channel
//! unchanged) unless `--allow-downgrade`. Two publishes at once write 4
//! and 5, never 4 twice.

mod support;

use deployd_lab::s3::S3Server;
use deployd_protocol::{
    DesiredArrival, MemoryNonceStore, Permissions, PublicKey, Request, SystemClock, TrustedKey,
    TrustedKeys, Verifier, DEFAULT_MAX_DESIRED_AGE_S,
};
use support::push::{mark_pulling, system_at, text, PushLab, AWS_ENV};

/// Where a test's channel is, and how to read a host's state from it.
trait Channel {
    /// `--channel`'s URL.
    fn url(&self) -> String;
    /// The bytes held for `host`, read as the host would.
    fn state(&self, host: &str) -> Option<Vec<u8>>;
}

struct Bucket(S3Server);

impl Channel for Bucket {
    fn url(&self) -> String {
        format!(
            "s3://fleet/channel/prod?endpoint={}&region=us-east-1",
            self.0.endpoint()
        )
    }

    fn state(&self, host: &str) -> Option<Vec<u8>> {
        self.0
            .object("fleet", &format!("channel/prod/hosts/{host}.json"))
            .expect("GET from moto")
    }
}

struct Folder(tempfile::TempDir);

impl Channel for Folder {
    fn url(&self) -> String {
        format!("file://{}/channel", self.0.path().display())
    }

    fn state(&self, host: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.path().join(format!("channel/hosts/{host}.json"))).ok()
    }
}

#[test]
fn publish_to_an_s3_bucket() {
    let server = S3Server::start().expect("moto");
    server.create_bucket("fleet").expect("bucket");
    publish_and_check(&Bucket(server));
}

#[test]
fn publish_to_a_folder() {
    publish_and_check(&Folder(tempfile::tempdir().expect("temp dir")));
}

fn publish_and_check(channel: &dyn Channel) {
    let mut fleet = PushLab::up(1);
    let host = fleet.lab.hosts()[0].name.clone();
    mark_pulling(fleet.lab.flake().dir(), &host);
    let url = channel.url();
    let first = fleet.lab.flake().head().expect("head");

    let publish = |fleet: &PushLab, extra: &[&str]| {
        let mut args = vec!["publish", "--all", "--channel", &url];
        args.extend_from_slice(extra);
        let output = fleet.push_with(&args, &AWS_ENV);
        let (stdout, stderr) = text(&output);
        (output.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = publish(&fleet, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let row = stdout.lines().find(|line| line.starts_with(&host));
    assert!(row.is_some_and(|row| row.contains("published")), "{stdout}");
    let state = channel.state(&host).expect("a state for the host");
    check_state(&fleet, &host, &state, (1, &first));

    let second = fleet
        .lab
        .flake_mut()
        .commit_changed_system()
        .expect("commit");
    let (code, stdout, stderr) = publish(&fleet, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let state = channel.state(&host).expect("a state for the host");
    check_state(&fleet, &host, &state, (2, &second));

    // The first revision does not descend from the second: refused.
    let (code, stdout, stderr) = publish(&fleet, &[&first]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "the channel holds {second}, and {first} does not descend from it"
        )),
        "{stdout}"
    );
    assert_eq!(
        channel.state(&host).as_deref(),
        Some(&state[..]),
        "unchanged"
    );

    let (code, stdout, stderr) = publish(&fleet, &["--allow-downgrade", &first]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let state = channel.state(&host).expect("a state for the host");
    let deploy = check_state(&fleet, &host, &state, (3, &first));
    assert!(deploy.allow_downgrade, "the state lets the host go back");

    // Two publishes at once: each write replaces only the state it read
    // (the folder's lock, the bucket's conditional put), so they never both
    // write 4: one writes 4, the other finds the channel changed, reads it
    // again and writes 5.
    let args = [
        "publish",
        "--all",
        "--channel",
        &url,
        "--allow-downgrade",
        &first,
    ];
    let racers = [0, 1].map(|_| fleet.spawn_push_with(&args, &AWS_ENV));
    for racer in racers {
        let output = racer.wait_with_output().expect("push publish");
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    }
    let state = channel.state(&host).expect("a state for the host");
    check_state(&fleet, &host, &state, (5, &first));
}

/// Verifies `bytes` as `host` would, with the operator's key: its sequence
/// and revision are `expected`, its system the one built at that revision.
fn check_state(
    fleet: &PushLab,
    host: &str,
    bytes: &[u8],
    expected: (u64, &str),
) -> deployd_protocol::DeployRequest {
    let (sequence, rev) = expected;
    let key: PublicKey = fleet.public_key.parse().expect("public key");
    let trusted = TrustedKeys::new([TrustedKey {
        key,
        may: Permissions::ALL,
    }])
    .expect("keys");
    let verifier = Verifier::new(trusted, host.parse().expect("host"), Box::new(SystemClock));
    let arrival = DesiredArrival {
        last_sequence: sequence.checked_sub(1).filter(|last| *last > 0),
        active_issued_at: None,
        max_age_s: DEFAULT_MAX_DESIRED_AGE_S,
    };
    let verified = verifier
        .verify_desired(bytes, &arrival, &mut MemoryNonceStore::default())
        .expect("the state verifies as the host verifies it");
    assert_eq!(verified.sequence, sequence);
    let message = verified.verified.message;
    assert_eq!(message.host.as_str(), host);
    let Request::Deploy(deploy) = message.request else {
        panic!("a desired state is a deploy");
    };
    assert_eq!(deploy.rev.as_ref().map(|rev| rev.as_str()), Some(rev));
    assert_eq!(
        deploy.store_path.to_string(),
        system_at(fleet.lab.flake().dir(), rev, host)
    );
    deploy
}
