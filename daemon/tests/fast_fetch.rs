//! The fast fetch against a cache served in-process: the closure walked
//! from the system through its narinfos' references, the NARs downloaded
//! (the first one cut midway, and tried again) into the stage, the stage
//! handed to Nix (a stand-in `nix-store` that copies it away) first among
//! the substituters, with the narinfos' URLs pointing at the staged files
//! and the NAR bytes as served; the stage removed afterwards. A closure of
//! few paths is left to Nix whole: no NAR downloaded, no stage made. A
//! cache's `nix-cache-info` is asked once for the daemon's life.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use deployd::Config;
use deployd_protocol::api::{DeployRecord, DeployState};
use deployd_protocol::{Action, SecretKey};
use support::{answer, config_text, deploy_envelope, key, now, stand_in_nix_store};

const SYSTEM: &str = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano";
const SYSTEM_HASH: &str = "0c8rfq3blmslvm3w5qd4ymrhng1nkdk9";
/// The paths the fast fetch leaves to Nix alone (the daemon's
/// `FEW_PATHS`, Nix's substitution jobs).
const FEW_PATHS: usize = 16;

fn narinfo(path: &str, url: &str, compression: &str, size: usize, references: &str) -> Vec<u8> {
    format!(
        "StorePath: {path}\nURL: {url}\nCompression: {compression}\nFileSize: {size}\n\
         NarHash: sha256:0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0\nNarSize: {size}\n\
         References: {references}\nSig: cache-1:c2lnbmF0dXJl\n"
    )
    .into_bytes()
}

/// The hash part of the system's `index`th dependency.
fn dep_hash(index: usize) -> String {
    format!("{index:02}8rfq3blmslvm3w5qd4ymrhng1nkdk9")
}

/// A cache holding the system (its NAR uncompressed, under harmonia's
/// form of URL) and `deps` dependencies it references (xz), with their
/// NARs: the system's of 100 kB, the others of 10 kB.
fn closure_files(deps: usize) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::from([(
        "/nix-cache-info".to_owned(),
        b"StoreDir: /nix/store\nPriority: 40\n".to_vec(),
    )]);
    let mut references = format!("{SYSTEM_HASH}-nixos-system-sambirano");
    for index in 0..deps {
        let hash = dep_hash(index);
        let url = format!("nar/dep-{index}.nar.xz");
        let path = format!("/nix/store/{hash}-dep");
        files.insert(
            format!("/{hash}.narinfo"),
            narinfo(&path, &url, "xz", 10_000, ""),
        );
        files.insert(format!("/{url}"), vec![9u8; 10_000]);
        references.push_str(&format!(" {hash}-dep"));
    }
    let system_nar = "nar/0mhvgqk4cpzx2x8ivfwfaf8chhqkdkypi7y7aq9v1ka6b1a8ajy0.nar";
    files.insert(
        format!("/{SYSTEM_HASH}.narinfo"),
        narinfo(
            SYSTEM,
            &format!("{system_nar}?hash={SYSTEM_HASH}"),
            "none",
            100_000,
            &references,
        ),
    );
    files.insert(format!("/{system_nar}"), vec![7u8; 100_000]);
    files
}

/// A cache: its files, how many NAR answers are still to be cut, and the
/// paths asked of it.
struct Cache {
    files: HashMap<String, Vec<u8>>,
    nars_to_cut: AtomicU32,
    asked: Mutex<Vec<String>>,
}

impl Cache {
    /// How many times `path` was asked.
    fn times_asked(&self, predicate: impl Fn(&str) -> bool) -> usize {
        let asked = self.asked.lock().expect("not poisoned");
        asked.iter().filter(|path| predicate(path)).count()
    }
}

async fn serve(cache: Arc<Cache>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    cache.asked.lock().expect("not poisoned").push(path.clone());
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

/// Serves `files` on a port of its own, cutting the first `nars_to_cut`
/// NAR answers midway.
async fn serve_cache(
    files: HashMap<String, Vec<u8>>,
    nars_to_cut: u32,
) -> (Arc<Cache>, SocketAddr) {
    let cache = Arc::new(Cache {
        files,
        nars_to_cut: AtomicU32::new(nars_to_cut),
        asked: Mutex::default(),
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
    (cache, address)
}

/// A daemon over a temporary directory, trusting `ops`.
struct Host {
    dir: tempfile::TempDir,
    ops: SecretKey,
    daemon: Arc<deployd::Daemon>,
}

impl Host {
    /// Starts a daemon with `substituter` as its one cache and, as its
    /// `nix-store`, the script `script` makes of the host's directory;
    /// quarantine off (the stand-in's fetches fail).
    async fn start(substituter: &str, script: impl FnOnce(&Path) -> String) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let nix_store = stand_in_nix_store(dir.path(), &script(dir.path()));
        let ops = key("ops-1");
        let text = config_text(dir.path(), &ops, "quarantine_s = 0\n", Some(&nix_store))
            .replace("http://127.0.0.1:9", substituter);
        let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
        let daemon = deployd::start(config, deployd::Environment::default())
            .await
            .expect("start");
        Host { dir, ops, daemon }
    }

    /// The daemon's state directory.
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Sends deploy `id` of the toy system and waits for its end: its
    /// record and log.
    async fn deploy_to_end(&self, id: &str) -> (DeployRecord, String) {
        let envelope = deploy_envelope(&self.ops, id, (now(), 60), Action::Switch);
        let request = Request::post("/v1/deploy")
            .body(Body::from(envelope))
            .expect("request");
        let (status, _, body) = answer(self.daemon.clone(), request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let record = loop {
            let record = self.daemon.deploy(id).expect("the deploy").record;
            if record.state.is_final() {
                break record;
            }
            assert!(std::time::Instant::now() < deadline, "{record:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log =
            std::fs::read_to_string(self.state().join(format!("deploys/{id}/log"))).expect("log");
        (record, log)
    }
}

/// Nix's stand-in: every path asked about is missing; the realise writes
/// its arguments to `realise-args` and a copy of the stages (if any) to
/// `staged`, and fails.
fn realise_keeping_the_stage(dir: &Path) -> String {
    format!(
        "#!/bin/sh\ncase \"$1\" in\n--check-validity) shift 2; for p in \"$@\"; do echo \"$p\"; done; exit 0;;\n--realise) echo \"$@\" > {dir}/realise-args; rm -rf {dir}/staged; [ -e {dir}/state/fetch ] && cp -r {dir}/state/fetch {dir}/staged; exit 1;;\nesac\nexit 1\n",
        dir = dir.display(),
    )
}

#[tokio::test]
async fn the_closure_is_staged_and_handed_to_nix_first() {
    let deps = FEW_PATHS;
    let (cache, address) = serve_cache(closure_files(deps), 1).await;
    let host = Host::start(&format!("http://{address}"), realise_keeping_the_stage).await;
    let (record, log) = host.deploy_to_end("fast").await;
    assert_eq!(record.state, DeployState::Failed, "{record:?}");

    // The walk found every path, one more than Nix alone would get, and
    // fetched them, the cut NAR again.
    let paths = deps + 1;
    assert!(
        log.contains(&format!(
            "deployd: fetched {paths} of {paths} paths, 0.3 of 0.3 MB"
        )),
        "{log}"
    );
    assert!(log.contains("trying again (1 of 6 tries made)"), "{log}");
    assert!(!log.contains("fast fetch stopped"), "{log}");
    assert!(!log.contains("without a stage"), "{log}");
    assert_eq!(
        cache.times_asked(|path| path.starts_with("/nar/")),
        paths + 1
    );

    // Nix was handed the stage first, then the cache.
    let stage_url = format!("file://{}", host.state().join("fetch/fast").display());
    let args = std::fs::read_to_string(host.dir.path().join("realise-args")).expect("args");
    assert!(
        args.contains(&format!("substituters {stage_url} http://{address} ")),
        "{args}"
    );
    assert!(args.contains("require-sigs true"), "{args}");
    let stage = host.dir.path().join("staged/fast");
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
    let dep = dep_hash(0);
    let dep_info = std::fs::read_to_string(stage.join(format!("{dep}.narinfo"))).expect("narinfo");
    assert!(dep_info.contains(&format!("\nURL: nar/{dep}.nar.xz\n")));
    assert_eq!(
        std::fs::read(stage.join(format!("nar/{SYSTEM_HASH}.nar"))).expect("nar"),
        vec![7u8; 100_000]
    );
    for index in 0..deps {
        let dep = dep_hash(index);
        assert_eq!(
            std::fs::read(stage.join(format!("nar/{dep}.nar.xz"))).expect("nar"),
            vec![9u8; 10_000]
        );
    }
    // Removed once Nix was done.
    assert!(!host.state().join("fetch/fast").exists());
}

#[tokio::test]
async fn few_paths_are_left_to_nix_without_a_stage() {
    let deps = FEW_PATHS - 1;
    let (cache, address) = serve_cache(closure_files(deps), 0).await;
    let host = Host::start(&format!("http://{address}"), realise_keeping_the_stage).await;
    let (record, log) = host.deploy_to_end("few").await;
    assert_eq!(record.state, DeployState::Failed, "{record:?}");

    let paths = deps + 1;
    assert!(
        log.contains(&format!(
            "deployd: {paths} paths to fetch, no more than Nix fetches at once: \
             Nix fetches them itself, without a stage"
        )),
        "{log}"
    );
    assert!(!log.contains("deployd: fetched "), "{log}");
    assert!(!log.contains("fast fetch stopped"), "{log}");
    // Every narinfo was asked, no NAR; Nix had the cache alone, with the
    // same checks; no stage was made.
    assert_eq!(cache.times_asked(|path| path.ends_with(".narinfo")), paths);
    assert_eq!(cache.times_asked(|path| path.starts_with("/nar/")), 0);
    let args = std::fs::read_to_string(host.dir.path().join("realise-args")).expect("args");
    assert!(
        args.contains(&format!("substituters http://{address} ")),
        "{args}"
    );
    assert!(args.contains("require-sigs true"), "{args}");
    assert!(!host.dir.path().join("staged").exists());
    assert!(!host.state().join("fetch").exists());

    // The next deploy asks the cache's nix-cache-info no more.
    let (record, _) = host.deploy_to_end("few-again").await;
    assert_eq!(record.state, DeployState::Failed, "{record:?}");
    assert_eq!(cache.times_asked(|path| path == "/nix-cache-info"), 1);
    assert_eq!(
        cache.times_asked(|path| path.ends_with(".narinfo")),
        2 * paths
    );
}

#[tokio::test]
async fn a_cache_that_is_not_http_is_left_to_nix() {
    let host = Host::start("s3://bucket?region=eu-west-1", |dir| {
        format!(
            "#!/bin/sh\n[ \"$1\" = --realise ] && echo \"$@\" > {}/realise-args\nexit 1\n",
            dir.display()
        )
    })
    .await;
    let (_, log) = host.deploy_to_end("s3").await;
    assert!(
        log.contains("deployd: fast fetch stopped: s3://bucket?region=eu-west-1 is not an http(s) cache; Nix fetches the rest itself"),
        "{log}"
    );
    let args = std::fs::read_to_string(host.dir.path().join("realise-args")).expect("args");
    assert!(
        args.contains("substituters s3://bucket?region=eu-west-1 "),
        "{args}"
    );
}
