//! A deploy whose record cannot be written when it ends (a full or broken
//! disk) still ends for everyone following it: its event stream sends the
//! end and `done`, instead of keep-alives for ever.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deployd::{api, Config, Daemon};
use deployd_protocol::{Action, DeployRequest, Message, Request as Signed, SecretKey};
use tower::ServiceExt;

#[tokio::test]
async fn the_event_stream_ends_even_when_the_last_write_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = SecretKey::generate("ops-1".parse().expect("name")).expect("random");
    let cache = SecretKey::generate("cache-1".parse().expect("name")).expect("random");
    // A fetch that waits until the test lets it fail.
    let gate = dir.path().join("gate");
    let fetch = dir.path().join("slow-nix-store");
    std::fs::write(
        &fetch,
        format!(
            "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.05; done\nexit 1\n",
            gate.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&fetch, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let text = format!(
        "hostname = \"sambirano\"\nstate_dir = \"{}\"\n\
         [[trusted_keys]]\nkey = \"{}\"\n\
         [nix]\nnix_store = \"{}\"\nsubstituters = [\"http://127.0.0.1:9\"]\ntrusted_public_keys = [\"{}\"]\n\
         [activation]\nsystem_profile = \"{}\"\ncurrent_system = \"{}\"\nbooted_system = \"{}\"\n",
        path("state"),
        ops.public_key(),
        fetch.display(),
        cache.public_key(),
        path("profiles/system"),
        path("current-system"),
        path("booted-system"),
    );
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = Daemon::open(config, None).expect("daemon");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let request = DeployRequest::new(
        "doomed".parse().expect("id"),
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano"
            .parse()
            .expect("path"),
        Action::Switch,
    )
    .expect("random");
    let message = Message::new(
        "sambirano".parse().expect("host"),
        Signed::Deploy(request),
        now,
        60,
    );
    let post = Request::post("/v1/deploy")
        .body(Body::from(message.sign(&[&ops]).to_json()))
        .expect("request");
    let answer = api::router(daemon.clone())
        .oneshot(post)
        .await
        .expect("infallible");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);

    let events = api::router(daemon.clone())
        .oneshot(
            Request::get("/v1/deploys/doomed/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(events.status(), StatusCode::OK);

    // The deploy's directory becomes a file: every write to it fails.
    let deploy_dir = dir.path().join("state/deploys/doomed");
    std::fs::remove_dir_all(&deploy_dir).expect("remove");
    std::fs::write(&deploy_dir, "").expect("a file in its place");
    std::fs::write(&gate, "").expect("let the fetch fail");

    // The stream ends with the deploy: read it whole, in bounded time.
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        axum::body::to_bytes(events.into_body(), 1 << 20),
    )
    .await;
    let seen = match read {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(error)) => panic!("reading the stream: {error}"),
        Err(_) => panic!("the event stream did not end"),
    };
    assert!(seen.contains("event: done"), "{seen}");
    assert!(seen.contains("failed"), "{seen}");
}
