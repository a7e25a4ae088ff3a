//! The fast fetch against a cache served in-process: the closure walked
//! from the system through its narinfos' references, the NARs downloaded
//! (the first one cut midway, and tried again) into the stage, the stage
//! handed to Nix (a stand-in `nix-store` that copies it away) first among
//! the substituters, with the narinfos' URLs pointing at the staged files
//! and the NAR bytes as served; the stage removed afterwards.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use deployd::Config;
use deployd_protocol::api::DeployState;
use deployd_protocol::Action;
use support::{answer, config_text, deploy_envelope, key, now, stand_in_nix_store};

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";
const DEP: &str = "/nix/store/1c8rfq3blmslvm3w5qd4ymrhng1nkdk9-dep";
const SYSTEM_HASH: &str = "0c8rfq3blmslvm3w5qd4ymrhng1nkdk9";
const DEP_HASH: &str = "1c8rfq3blmslvm3w5qd4ymrhng1nkdk9";

fn narinfo(path: &str, url: &str, compression: &str, size: usize, references: &str) -> Vec<u8> {
    format!(
        "StorePath: {path}\nURL: {url}\nCompression: {compression}\nFileSize: {size}\n\
         NarHash: sha256:0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0\nNarSize: {size}\n\
         References: {references}\nSig: cache-1:c2lnbmF0dXJl\n"
    )
    .into_bytes()
}

/// A cache: its files, and how many NAR answers are still to be cut.
struct Cache {
    files: HashMap<String, Vec<u8>>,
    nars_to_cut: AtomicU32,
}

async fn serve(cache: Arc<Cache>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    let Some(body) = cache.files.get(&path).cloned() else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .expect("answer");
    };
    let cut = path.starts_with("/nar/")
        && cache
            .nars_to_cut
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
    let length = body.len();
    let body = if cut {
        // Half the body, then the connection fails.
        let half = Bytes::from(body[..length / 2].to_vec());
        Body::from_stream(futures_util::stream::iter([
            Ok(half),
            Err(std::io::Error::other("cut")),
        ]))
    } else {
        Body::from(body)
    };
    Response::builder()
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .expect("answer")
}

#[tokio::test]
async fn the_closure_is_staged_and_handed_to_nix_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let system_nar = vec![7u8; 100_000];
    let dep_nar = vec![9u8; 60_000];
    let files = HashMap::from([
        (
            "/nix-cache-info".to_owned(),
            b"StoreDir: /nix/store\nPriority: 40\n".to_vec(),
        ),
        (
            format!("/{SYSTEM_HASH}.narinfo"),
            narinfo(
                SYSTEM,
                // harmonia's form
                &format!("nar/0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0.nar?hash={SYSTEM_HASH}"),
                "none",
                system_nar.len(),
                &format!("{DEP_HASH}-dep {SYSTEM_HASH}-nixos-system-sambirano"),
            ),
        ),
        (
            format!("/{DEP_HASH}.narinfo"),
            narinfo(DEP, "nar/dep.nar.xz", "xz", dep_nar.len(), ""),
        ),
        (
            "/nar/0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0.nar".to_owned(),
            system_nar.clone(),
        ),
        ("/nar/dep.nar.xz".to_owned(), dep_nar.clone()),
    ]);
    let cache = Arc::new(Cache {
        files,
        nars_to_cut: AtomicU32::new(1),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = axum::Router::new().fallback({
        let cache = cache.clone();
        move |request: Request<Body>| serve(cache.clone(), request)
    });
    tokio::spawn(async move { axum::serve(listener, router).await });

    // Nix's stand-in: every path asked about is missing; the realise keeps
    // its arguments and a copy of the stage, and fails.
    let staged = dir.path().join("staged");
    let args = dir.path().join("realise-args");
    let state = dir.path().join("state");
    let nix_store = stand_in_nix_store(
        dir.path(),
        &format!(
            "#!/bin/sh\ncase \"$1\" in\n--check-validity) shift 2; for p in \"$@\"; do echo \"$p\"; done; exit 0;;\n--realise) echo \"$@\" > {args}; rm -rf {staged}; cp -r {state}/fetch {staged}; exit 1;;\nesac\nexit 1\n",
            args = args.display(),
            staged = staged.display(),
            state = state.display(),
        ),
    );
    let ops = key("ops-1");
    let text = config_text(dir.path(), &ops, "", Some(&nix_store))
        .replace("http://127.0.0.1:9", &format!("http://{address}"));
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = deployd::start(config, deployd::Environment::default())
        .await
        .expect("start");
    let envelope = deploy_envelope(&ops, "fast", (now(), 60), Action::Switch);
    let request = Request::post("/v1/deploy")
        .body(Body::from(envelope))
        .expect("request");
    let (status, _, body) = answer(daemon.clone(), request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let record = loop {
        let record = daemon.deploy("fast").expect("the deploy").record;
        if record.state.is_final() {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    let log = std::fs::read_to_string(state.join("deploys/fast/log")).expect("log");

    // The walk found both paths and fetched them, the cut NAR again.
    assert!(
        log.contains("deployd: fetched 2 of 2 paths, 0.2 of 0.2 MB"),
        "{log}"
    );
    assert!(log.contains("trying again (1 of 6 tries made)"), "{log}");
    assert!(!log.contains("fast fetch stopped"), "{log}");

    // Nix was handed the stage first, then the cache.
    let stage_url = format!("file://{}", state.join("fetch/fast").display());
    let args = std::fs::read_to_string(&args).expect("realise args");
    assert!(
        args.contains(&format!("substituters {stage_url} http://{address} ")),
        "{args}"
    );
    assert!(args.contains("require-sigs true"), "{args}");
    let stage = staged.join("fast");
    assert_eq!(
        std::fs::read_to_string(stage.join("nix-cache-info")).expect("info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 0\n"
    );
    let system_info =
        std::fs::read_to_string(stage.join(format!("{SYSTEM_HASH}.narinfo"))).expect("narinfo");
    assert!(
        system_info.contains(&format!("\nURL: nar/{SYSTEM_HASH}.nar\n")),
        "{system_info}"
    );
    assert!(system_info.contains("\nSig: cache-1:c2lnbmF0dXJl\n"));
    let dep_info =
        std::fs::read_to_string(stage.join(format!("{DEP_HASH}.narinfo"))).expect("narinfo");
    assert!(dep_info.contains(&format!("\nURL: nar/{DEP_HASH}.nar.xz\n")));
    assert_eq!(
        std::fs::read(stage.join(format!("nar/{SYSTEM_HASH}.nar"))).expect("nar"),
        system_nar
    );
    assert_eq!(
        std::fs::read(stage.join(format!("nar/{DEP_HASH}.nar.xz"))).expect("nar"),
        dep_nar
    );
    // Removed once Nix was done.
    assert!(!state.join("fetch/fast").exists());
}

#[tokio::test]
async fn a_cache_that_is_not_http_is_left_to_nix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = dir.path().join("realise-args");
    let nix_store = stand_in_nix_store(
        dir.path(),
        &format!(
            "#!/bin/sh\n[ \"$1\" = --realise ] && echo \"$@\" > {}\nexit 1\n",
            args.display()
        ),
    );
    let ops = key("ops-1");
    let text = config_text(dir.path(), &ops, "", Some(&nix_store))
        .replace("http://127.0.0.1:9", "s3://bucket?region=eu-west-1");
    let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
    let daemon = deployd::start(config, deployd::Environment::default())
        .await
        .expect("start");
    let envelope = deploy_envelope(&ops, "s3", (now(), 60), Action::Switch);
    let request = Request::post("/v1/deploy")
        .body(Body::from(envelope))
        .expect("request");
    let (status, _, body) = answer(daemon.clone(), request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !daemon.deploy("s3").expect("deploy").record.state.is_final() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("state/deploys/s3/log")).expect("log");
    assert!(
        log.contains("deployd: fast fetch stopped: s3://bucket?region=eu-west-1 is not an http(s) cache; Nix fetches the rest itself"),
        "{log}"
    );
    let args = std::fs::read_to_string(&args).expect("realise args");
    assert!(
        args.contains("substituters s3://bucket?region=eu-west-1 "),
        "{args}"
    );
}
