//! Hooks `push serve` must not act on, for each of the four forges: a
//! wrong or missing signature (GitLab: token) is `401`, a body over 5 MiB
//! is `413`, and a ping or test delivery, a tag push, a branch deletion, a
//! push to a branch nobody follows and any other event are `204`; after all
//! of them nothing was queued, deployed or reported on the forge.

mod support;

use std::time::Duration;

use deployd_lab::forge::{ForgeKind, PushEvent, RawHook, Signature};
use support::deployd::status;
use support::forge::ForgeFleet;

fn push_event(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::GitLab => "Push Hook",
        _ => "push",
    }
}

fn other_event(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::GitLab => "Issue Hook",
        _ => "issues",
    }
}

#[test]
fn hooks_that_must_do_nothing_do_nothing() {
    for kind in ForgeKind::ALL {
        let mut fleet = ForgeFleet::up(1, kind);
        let head = fleet.lab.flake().head().expect("head");
        let next = fleet
            .lab
            .flake_mut()
            .commit_changed_system()
            .expect("commit");
        let body =
            format!("{{\"ref\":\"refs/heads/main\",\"before\":\"{head}\",\"after\":\"{next}\"}}")
                .into_bytes();
        let raw = |event: &str, body: &[u8], signature| RawHook {
            event: event.into(),
            body: body.to_vec(),
            signature,
            extra_headers: Vec::new(),
        };
        let send = |hook: RawHook| fleet.forge.send_hook(&hook).expect("hook sent");

        for signature in [Signature::Wrong, Signature::Missing] {
            let answer = send(raw(push_event(kind), &body, signature));
            assert_eq!(answer.status, 401, "{kind} {signature:?}: {}", answer.body);
            let error: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
            assert_eq!(error["error"], "bad_signature", "{kind}");
        }
        let mut huge = body.clone();
        huge.resize(5 * 1024 * 1024 + 1, b' ');
        let answer = send(raw(push_event(kind), &huge, Signature::Correct));
        assert_eq!(answer.status, 413, "{kind}: {}", answer.body);

        let ignored = [
            (
                "other event",
                send(raw(other_event(kind), b"{}", Signature::Correct)).status,
            ),
            (
                "tag push",
                fleet
                    .forge
                    .push_hook(&PushEvent {
                        reference: "refs/tags/v1".into(),
                        before: fleet.forge.zero_id().expect("zero"),
                        after: next.clone(),
                    })
                    .expect("tag hook")
                    .status,
            ),
            (
                "branch deletion",
                fleet
                    .forge
                    .push_hook(&PushEvent {
                        reference: "refs/heads/feature".into(),
                        before: next.clone(),
                        after: fleet.forge.zero_id().expect("zero"),
                    })
                    .expect("deletion hook")
                    .status,
            ),
            (
                "other branch",
                fleet
                    .forge
                    .push_hook(&PushEvent {
                        reference: "refs/heads/dev".into(),
                        before: head.clone(),
                        after: next.clone(),
                    })
                    .expect("other branch")
                    .status,
            ),
        ];
        for (what, answer) in ignored {
            assert_eq!(answer, 204, "{kind}: {what}");
        }
        // GitHub's ping, Gitea's and Forgejo's test delivery (a push that
        // does not move the branch). GitLab's test is an ordinary push event.
        if kind != ForgeKind::GitLab {
            assert_eq!(
                fleet.forge.ping().expect("ping").status,
                204,
                "{kind}: ping"
            );
        }

        std::thread::sleep(Duration::from_millis(500));
        let service = fleet.service_status();
        assert_eq!(
            service["queued"].as_array().map(Vec::len),
            Some(0),
            "{kind}: {service}"
        );
        assert_eq!(
            service["recent"].as_array().map(Vec::len),
            Some(0),
            "{kind}: {service}"
        );
        assert!(service["running"].is_null(), "{kind}: {service}");
        assert!(
            fleet.forge.statuses().is_empty(),
            "{kind}: {:?}",
            fleet.forge.statuses()
        );
        let host = &fleet.lab.hosts()[0];
        assert_eq!(status(&fleet.lab, host).current_deploy, None, "{kind}");
        let metrics = reqwest::blocking::get(format!("{}/metrics", fleet.url()))
            .and_then(|answer| answer.text())
            .expect("metrics");
        assert!(
            metrics.contains("deployd_forge_hooks_total{outcome=\"unauthorized\"} 2"),
            "{kind}: {metrics}"
        );
        assert!(metrics.contains("deployd_forge_hooks_total{outcome=\"too_large\"} 1"));
        assert!(metrics.contains("deployd_forge_hooks_total{outcome=\"accepted\"} 0"));
    }
}
