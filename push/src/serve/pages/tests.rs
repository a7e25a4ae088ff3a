//! The pages through the service's own router: what each shows of a kept
//! rollout, that text from hosts and commits is escaped, the headers that
//! allow nothing but the pages' own script and style, and clear `404`s.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use std::sync::Arc;

use crate::serve::api;
use crate::serve::config::ForgeKind;
use crate::serve::hook_body::BodyLimits;
use crate::serve::queue::{HostOutcome, QueuedPush, RolloutRecord};
use crate::serve::router_tests::service_with;
use crate::serve::Service;

async fn get(service: &Arc<Service>, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = api::router(service.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

/// A service that kept one rollout (number 1) in which `sambirano`
/// rolled back with a hostile message and log line, and `ankarana`
/// succeeded.
fn service_with_a_rollout(dir: &std::path::Path) -> Arc<Service> {
    let key = deployd_protocol::SecretKey::generate("ci-1".parse().expect("name")).expect("key");
    let service = service_with(ForgeKind::Forgejo, dir, BodyLimits::default(), &key, "");
    let rev = "c0ffee".repeat(6) + "abcd";
    let mut queue = service.queue();
    queue
        .enqueue(QueuedPush {
            branch: "main".into(),
            after: rev.clone(),
            delivery: "d-1".into(),
            received_at_ms: 1,
            superseded: Vec::new(),
        })
        .expect("queued");
    let (_, id) = queue.start_next().expect("started").expect("a push");
    let journal = &service.pages.journal;
    journal.begin(id, "main", 1_000);
    journal.building(&rev, &["ankarana".into(), "sambirano".into()], 1_000);
    journal.phase("sambirano", "fetching", 2_000);
    journal.line(
        "sambirano",
        "<img src=x onerror=alert(1)> from https://ci:hunter2@cache.example.org",
    );
    journal.ended(
        "sambirano",
        "rolled_back",
        Some("rolled back: switch failed <b>".into()),
        3_000,
    );
    journal.ended("ankarana", "succeeded", None, 3_000);
    queue
        .finish(RolloutRecord {
            id,
            branch: "main".into(),
            rev: Some(rev),
            outcome: "failed".into(),
            message: None,
            started_at_ms: 1_000,
            finished_at_ms: 3_000,
            hosts: vec![
                HostOutcome {
                    host: "ankarana".into(),
                    result: "succeeded".into(),
                    message: None,
                    target_url: None,
                },
                HostOutcome {
                    host: "sambirano".into(),
                    result: "rolled_back".into(),
                    message: Some("rolled back: switch failed <b>".into()),
                    target_url: None,
                },
            ],
        })
        .expect("finished");
    drop(queue);
    journal.finish(&[id]).expect("kept");
    service
}

#[tokio::test]
async fn a_kept_rollout_shows_each_host_its_phases_and_why_escaped() {
    let dir = tempfile::tempdir().expect("dir");
    let service = service_with_a_rollout(dir.path());
    let (status, headers, body) = get(&service, "/rollouts/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("text");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        body.contains("id=\"host-sambirano\" data-state=\"rolled_back\""),
        "{body}"
    );
    assert!(
        body.contains("rolled back: switch failed &lt;b&gt;"),
        "{body}"
    );
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(!body.contains("hunter2"), "{body}");
    assert!(body.contains("fetching"), "{body}");
    assert!(
        body.contains("data-live=\"false\""),
        "a finished rollout is not live"
    );
    assert!(body.contains("href=\"../hosts/sambirano\""), "{body}");
}

#[tokio::test]
async fn the_fleet_page_lists_the_rollouts_and_a_host_page_its_history() {
    let dir = tempfile::tempdir().expect("dir");
    let service = service_with_a_rollout(dir.path());
    let (status, _, body) = get(&service, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("href=\"./rollouts/1\""), "{body}");
    assert!(body.contains("1 of 2 hosts succeeded"), "{body}");
    let (status, _, body) = get(&service, "/hosts/sambirano").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("rolled back: switch failed &lt;b&gt;"),
        "{body}"
    );
    assert!(
        body.contains("href=\"../rollouts/1#host-sambirano\""),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_pages_are_404_and_the_assets_are_served() {
    let dir = tempfile::tempdir().expect("dir");
    let service = service_with_a_rollout(dir.path());
    for path in [
        "/rollouts/2",
        "/rollouts/x",
        "/hosts/nobody",
        "/hosts/%3Cscript%3E",
    ] {
        let (status, _, body) = get(&service, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.contains("<script>"), "{body}");
    }
    let (status, headers, body) = get(&service, "/assets/pages.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(body.contains("DOMParser"));
    let (status, headers, _) = get(&service, "/assets/pages.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
}

#[tokio::test]
async fn a_running_rollout_is_live_with_its_hosts_in_their_batches() {
    let dir = tempfile::tempdir().expect("dir");
    let service = service_with_a_rollout(dir.path());
    let (_, id) = {
        let mut queue = service.queue();
        queue
            .enqueue(QueuedPush {
                branch: "main".into(),
                after: "d".repeat(40),
                delivery: "d-2".into(),
                received_at_ms: 5_000,
                superseded: Vec::new(),
            })
            .expect("queued");
        queue.start_next().expect("started").expect("a push")
    };
    assert_eq!(id, 2);
    let journal = &service.pages.journal;
    journal.begin(id, "main", 5_000);
    journal.building(
        &"d".repeat(40),
        &["ankarana".into(), "sambirano".into()],
        5_000,
    );
    journal.batches(vec![
        ("canary".into(), vec!["sambirano".into()]),
        ("1".into(), vec!["ankarana".into()]),
    ]);
    journal.phase("sambirano", "fetching", 6_000);
    journal.line("sambirano", "deployd: fetched 3 of 12 paths, 1.0 of 4.0 MB");
    let (status, _, body) = get(&service, "/rollouts/2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("data-live=\"true\" data-every=\"1000\""),
        "{body}"
    );
    let canary = body.find("<h2>Canary</h2>").expect("the canary's batch");
    let first = body.find("<h2>Batch 1</h2>").expect("the first batch");
    let sambirano = body.find("id=\"host-sambirano\"").expect("sambirano");
    let ankarana = body.find("id=\"host-ankarana\"").expect("ankarana");
    assert!(
        canary < sambirano && sambirano < first && first < ankarana,
        "{body}"
    );
    assert!(body.contains("fetched 3 of 12 paths"), "{body}");
    assert!(body.contains("data-state=\"fetching\""), "{body}");
    let (_, _, fleet) = get(&service, "/").await;
    assert!(fleet.contains("href=\"./rollouts/2\""), "{fleet}");
    assert!(
        fleet.contains("data-every=\"1000\""),
        "the fleet follows a running rollout fast"
    );
}
