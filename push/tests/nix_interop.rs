//! Keys are interchangeable with real Nix: a key made by `push keygen` signs
//! store paths that `nix store verify` accepts, and a key made by
//! `nix-store --generate-binary-cache-key` signs deploy requests the verifier
//! accepts.

mod support;

use std::process::Command;

use deployd_protocol::{
    Action, Arrival, DeployRequest, Endpoint, MemoryNonceStore, Message, Permissions, PublicKey,
    Request, SecretKey, SystemClock, TrustedKey, TrustedKeys, Verifier,
};
use support::{build_unique_path, nix, push, run, run_ok};

#[test]
fn nix_accepts_signatures_made_with_a_push_keygen_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(
        push()
            .args(["keygen", "interop-1", "--out"])
            .arg(dir.path()),
    );
    let secret = dir.path().join("interop-1.secret");
    let public = std::fs::read_to_string(dir.path().join("interop-1.public")).expect("public");
    let path = build_unique_path(dir.path());
    let verify = |key: &str| {
        run(nix(&["store", "verify", "--sigs-needed", "1"])
            .args(["--trusted-public-keys", key])
            .arg(&path))
    };

    // Before signing, Nix finds no valid signature: the check below is real.
    assert!(!verify(&public).status.success());

    let secret_arg = secret.to_str().expect("utf-8 path");
    run_ok(nix(&["store", "sign", "-k", secret_arg]).arg(&path));
    let verified = verify(&public);
    assert!(
        verified.status.success(),
        "nix store verify refused: {}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Another key does not vouch for it.
    let other = SecretKey::generate("interop-2".parse().expect("name")).expect("random source");
    assert!(!verify(&other.public_key().to_string()).status.success());
}

#[test]
fn the_verifier_accepts_a_request_signed_with_a_nix_generated_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_path = dir.path().join("nix-made.secret");
    let public_path = dir.path().join("nix-made.public");
    run_ok(
        Command::new("nix-store")
            .args(["--generate-binary-cache-key", "nix-made-1"])
            .args([&secret_path, &public_path]),
    );
    let secret = SecretKey::load(&secret_path).expect("Nix's secret key loads");
    let public = PublicKey::load(&public_path).expect("Nix's public key loads");
    assert_eq!(secret.public_key(), public);

    let request = DeployRequest::new(
        "interop-1".parse().expect("id"),
        build_unique_path(dir.path()).parse().expect("store path"),
        Action::Switch,
    )
    .expect("random source");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let message = Message::new(
        "sambirano".parse().expect("host"),
        Request::Deploy(request),
        now,
        60,
    );
    let bytes = message.sign(&[&secret]).to_json();

    let trusted = TrustedKeys::new([TrustedKey {
        key: public,
        may: Permissions::ALL,
    }])
    .expect("one key");
    let verifier = Verifier::new(
        trusted,
        "sambirano".parse().expect("host"),
        Box::new(SystemClock),
    );
    let arrival = Arrival {
        endpoint: Endpoint::Deploy,
        active_issued_at: None,
    };
    let verified = verifier
        .verify(&bytes, &arrival, &mut MemoryNonceStore::default())
        .expect("a Nix-made key signs valid requests");
    assert_eq!(verified.key.as_str(), "nix-made-1");
    assert_eq!(verified.message, message);
}
