//! Each forge's hooks: a branch push, a tag, a forced push, deletions, the
//! test delivery, redelivery, and hand-made hooks for negative tests.

use serde_json::Value;

use super::{assert_signed, event_of, git, setup, Received, SECRET};
use crate::forge::sign::hmac_sha256_hex;
use crate::forge::{ForgeKind, PushEvent, RawHook, Signature};

#[test]
fn kinds_parse_and_print_as_the_config_names_them() {
    for kind in ForgeKind::ALL {
        assert_eq!(kind.to_string().parse::<ForgeKind>().expect("parse"), kind);
    }
    assert!("bitbucket".parse::<ForgeKind>().is_err());
}

#[test]
fn a_branch_push_is_each_forges_push_hook() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let push = PushEvent {
            reference: "refs/heads/main".into(),
            before: setup.first.clone(),
            after: setup.second.clone(),
        };
        let response = setup.forge.push_hook(&push).expect("hook");
        assert_eq!(response.status, 202, "{kind}");
        let received = setup.receiver.received();
        assert_eq!(received.len(), 1, "{kind}");
        let hook = &received[0];
        assert_eq!(hook.path, format!("/v1/hooks/{kind}"));
        assert_signed(kind, hook);
        let body = hook.json();
        assert_eq!(body["ref"], "refs/heads/main", "{kind}");
        assert_eq!(body["before"], setup.first.as_str(), "{kind}");
        assert_eq!(body["after"], setup.second.as_str(), "{kind}");
        let commits = body["commits"].as_array().expect("commits");
        assert_eq!(commits.len(), 1, "{kind}");
        assert_eq!(commits[0]["id"], setup.second.as_str(), "{kind}");
        assert_eq!(commits[0]["author"]["email"], "mira@example.org", "{kind}");
        let text = String::from_utf8_lossy(&hook.body).into_owned();
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, hook), "push");
                assert_eq!(body["created"], false);
                assert_eq!(body["deleted"], false);
                assert_eq!(body["forced"], false);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
                assert_eq!(
                    body["head_commit"]["message"],
                    "sambirano: a host\n\nWith a body."
                );
                assert_eq!(body["head_commit"]["added"][0], "hosts/sambirano.nix");
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
                assert!(!text.contains('\n'), "GitHub sends compact JSON");
                assert!(text.starts_with("{\"ref\":"), "{text}");
            }
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                assert_eq!(event_of(kind, hook), "push");
                assert_eq!(body["total_commits"], 1);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
                assert!(text.starts_with("{\n  \"ref\": "), "indented: {text}");
                assert!(
                    text.contains("\n  \"head_commit\": {\n    \"id\": "),
                    "{text}"
                );
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, hook), "Push Hook");
                assert_eq!(body["object_kind"], "push");
                assert_eq!(body["checkout_sha"], setup.second.as_str());
                assert_eq!(body["total_commits_count"], 1);
                assert_eq!(body["project"]["path_with_namespace"], "ops/fleet");
                assert_eq!(commits[0]["title"], "sambirano: a host");
                assert!(!text.contains('\n') || text.contains("\\n"), "compact");
            }
        }
        let deliveries = setup.forge.hook_deliveries();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].status, Some(202));
        assert_eq!(deliveries[0].after.as_deref(), Some(setup.second.as_str()));
        assert_eq!(deliveries[0].body, hook.body);
    }
}

#[test]
fn a_tag_push_and_a_forced_push_are_announced_as_the_forges_do() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let zero = setup.forge.zero_id().expect("zero");
        assert_eq!(zero.len(), 40);
        git(&setup.repository, &["tag", "v1", &setup.second]);
        let tag = PushEvent {
            reference: "refs/tags/v1".into(),
            before: zero.clone(),
            after: setup.second.clone(),
        };
        setup.forge.push_hook(&tag).expect("tag hook");
        let received = setup.receiver.wait_for(1);
        let body = received[0].json();
        assert_eq!(body["ref"], "refs/tags/v1", "{kind}");
        assert_eq!(body["before"], zero.as_str(), "{kind}");
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["created"], true);
                assert_eq!(body["head_commit"]["id"], setup.second.as_str());
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Tag Push Hook");
                assert_eq!(body["object_kind"], "tag_push");
                assert_eq!(body["checkout_sha"], setup.second.as_str());
            }
            _ => assert_eq!(event_of(kind, &received[0]), "push"),
        }
        if kind == ForgeKind::GitHub {
            let forced = PushEvent {
                reference: "refs/heads/main".into(),
                before: setup.second.clone(),
                after: setup.first.clone(),
            };
            setup.forge.push_hook(&forced).expect("forced hook");
            let body = setup.receiver.wait_for(2)[1].json();
            assert_eq!(body["forced"], true);
        }
    }
}

#[test]
fn a_deletion_is_a_zero_push_or_a_delete_event() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let zero = setup.forge.zero_id().expect("zero");
        let branch = PushEvent {
            reference: "refs/heads/feature".into(),
            before: setup.second.clone(),
            after: zero.clone(),
        };
        setup.forge.push_hook(&branch).expect("branch deletion");
        let received = setup.receiver.received();
        assert_eq!(received.len(), 1, "{kind}: one hook for a deleted branch");
        let body = received[0].json();
        assert_signed(kind, &received[0]);
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["deleted"], true);
                assert_eq!(body["after"], zero.as_str());
                assert_eq!(body["head_commit"], Value::Null);
                assert_eq!(body["commits"], serde_json::json!([]));
            }
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                assert_eq!(event_of(kind, &received[0]), "delete");
                assert_eq!(body["ref"], "feature");
                assert_eq!(body["ref_type"], "branch");
                assert_eq!(body["pusher_type"], "user");
                assert_eq!(body["repository"]["full_name"], "ops/fleet");
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Push Hook");
                assert_eq!(body["after"], zero.as_str());
                assert_eq!(body["checkout_sha"], Value::Null);
                assert_eq!(body["total_commits_count"], 0);
            }
        }
        if matches!(kind, ForgeKind::Gitea | ForgeKind::Forgejo) {
            let tag = PushEvent {
                reference: "refs/tags/v1".into(),
                before: setup.second.clone(),
                after: zero.clone(),
            };
            setup.forge.push_hook(&tag).expect("tag deletion");
            let received = setup.receiver.wait_for(3);
            assert_eq!(event_of(kind, &received[1]), "push");
            assert_eq!(received[1].json()["after"], zero.as_str());
            assert_eq!(event_of(kind, &received[2]), "delete");
            assert_eq!(received[2].json()["ref_type"], "tag");
        }
    }
}

#[test]
fn the_test_delivery_and_redelivery() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        setup.forge.ping().expect("ping");
        let received = setup.receiver.wait_for(1);
        assert_signed(kind, &received[0]);
        let body = received[0].json();
        match kind {
            ForgeKind::GitHub => {
                assert_eq!(event_of(kind, &received[0]), "ping");
                assert!(body["zen"].is_string());
                assert!(body["hook_id"].is_number());
            }
            ForgeKind::GitLab => {
                assert_eq!(event_of(kind, &received[0]), "Push Hook");
                assert_eq!(body["after"], setup.second.as_str());
                assert_eq!(body["commits"].as_array().map(Vec::len), Some(2));
            }
            _ => {
                assert_eq!(event_of(kind, &received[0]), "push");
                assert_eq!(body["before"], setup.second.as_str());
                assert_eq!(body["after"], setup.second.as_str());
            }
        }
        let first = setup.forge.hook_deliveries().remove(0);
        setup.forge.redeliver(&first).expect("redeliver");
        let again = setup.receiver.wait_for(2);
        assert_eq!(again[1].body, again[0].body, "{kind}: the same bytes");
        let id = |request: &Received| request.header(kind.delivery_header()).map(str::to_owned);
        let same_id = id(&again[0]) == id(&again[1]);
        let keeps_id = matches!(kind, ForgeKind::GitHub | ForgeKind::GitLab);
        assert_eq!(same_id, keeps_id, "{kind}");
        let deliveries = setup.forge.hook_deliveries();
        assert!(deliveries[1].redelivery);
    }
}

#[test]
fn hand_made_hooks_for_negative_tests() {
    let setup = setup(ForgeKind::GitHub);
    for signature in [Signature::Wrong, Signature::Missing] {
        let hook = RawHook {
            event: "push".into(),
            body: b"{\"ref\":\"refs/heads/main\"}".to_vec(),
            signature,
            extra_headers: vec![("Content-Type".into(), "text/plain".into())],
        };
        setup.forge.send_hook(&hook).expect("sent");
    }
    let received = setup.receiver.wait_for(2);
    let right = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), &received[0].body)
    );
    let wrong = received[0].header("X-Hub-Signature-256").expect("signed");
    assert!(wrong.starts_with("sha256=") && wrong != right);
    assert_eq!(received[0].header("Content-Type"), Some("text/plain"));
    assert_eq!(received[1].header("X-Hub-Signature-256"), None);
    assert_eq!(received[1].header("X-Hub-Signature"), None);
}
