//! The commit status APIs: recorded calls, tokens, the forges' validation
//! and errors, an outage.

use serde_json::Value;

use super::{setup, setup_with, TOKEN};
use crate::forge::{ForgeKind, ForgeStandIn};
use crate::tls::TestCa;

fn post_status(forge: &ForgeStandIn, path: &str, auth: (&str, &str), body: &Value) -> (u16, Value) {
    post_status_to(
        &reqwest::blocking::Client::new(),
        &forge.api_url(),
        path,
        auth,
        body,
    )
    .expect("status call")
}

fn post_status_to(
    client: &reqwest::blocking::Client,
    api: &str,
    path: &str,
    auth: (&str, &str),
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(format!("{api}{path}"))
        .header(auth.0, auth.1)
        .json(body)
        .send()?;
    let status = response.status().as_u16();
    let text = response.text()?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[test]
fn with_a_certificate_the_api_is_https_only() {
    let ca = TestCa::new("forge test CA").expect("CA");
    let identity = ca
        .issue("forge", &["127.0.0.1".parse().expect("ip")])
        .expect("certificate");
    let setup = setup_with(ForgeKind::GitHub, Some(identity));
    let forge = &setup.forge;
    let https = forge.https_url().expect("an HTTPS listener");
    assert_eq!(forge.api_url(), https);
    let path = format!("/repos/ops/fleet/statuses/{}", setup.second);
    let auth = ("Authorization", format!("Bearer {TOKEN}"));
    let auth = (auth.0, auth.1.as_str());
    let body = serde_json::json!({"state": "pending", "context": "deployd/sambirano"});

    // Not on the plain listener, which still serves git.
    let plain = forge.git_url().replace("/ops/fleet.git", "");
    let client = reqwest::blocking::Client::new();
    let (status, _) = post_status_to(&client, &plain, &path, auth, &body).expect("answer");
    assert_eq!(status, 404);

    // A client that does not trust the CA gets nothing through.
    let error = post_status_to(&client, &https, &path, auth, &body).expect_err("untrusted");
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
    assert!(forge.statuses().is_empty());

    let pem = std::fs::read(ca.certificate()).expect("ca");
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let (status, answer) = post_status_to(&trusting, &https, &path, auth, &body).expect("answer");
    assert_eq!(status, 201, "{answer}");
    assert!(answer["url"]
        .as_str()
        .is_some_and(|url| url.starts_with("https://")));
    assert_eq!(forge.statuses().len(), 1);

    // git over HTTPS, trusting the CA as git does (its own CA file).
    let listed = crate::run::run(
        std::process::Command::new("git")
            .args(["ls-remote", &format!("{https}/ops/fleet.git")])
            .env("GIT_SSL_CAINFO", ca.certificate()),
    )
    .expect("git over HTTPS");
    assert!(crate::run::stdout_text(&listed).contains(&setup.second));
}

#[test]
fn status_apis_record_calls_and_answer_as_the_forges() {
    for kind in ForgeKind::ALL {
        let setup = setup(kind);
        let forge = &setup.forge;
        let sha = setup.second.as_str();
        let (path, auth, wrong): (String, (&str, String), (&str, &str)) = match kind {
            ForgeKind::GitHub => (
                format!("/repos/ops/fleet/statuses/{sha}"),
                ("Authorization", format!("Bearer {TOKEN}")),
                ("Authorization", "Bearer nope"),
            ),
            ForgeKind::Gitea | ForgeKind::Forgejo => (
                format!("/api/v1/repos/ops/fleet/statuses/{sha}"),
                ("Authorization", format!("token {TOKEN}")),
                ("Authorization", "token nope"),
            ),
            ForgeKind::GitLab => (
                format!("/api/v4/projects/ops%2Ffleet/statuses/{sha}"),
                ("PRIVATE-TOKEN", TOKEN.to_owned()),
                ("PRIVATE-TOKEN", "nope"),
            ),
        };
        let context_key = if kind == ForgeKind::GitLab {
            "name"
        } else {
            "context"
        };
        let status = |state: &str, description: &str| {
            let mut body = serde_json::json!({
                "state": state,
                "description": description,
                "target_url": "http://ci-1/deploys/1",
            });
            body[context_key] = Value::from("deployd/sambirano");
            body
        };
        let pending = if kind == ForgeKind::GitLab {
            "running"
        } else {
            "pending"
        };
        let (code, body) = post_status(
            forge,
            &path,
            (auth.0, &auth.1),
            &status(pending, "building"),
        );
        assert_eq!(code, 201, "{kind}: {body}");
        let (code, _) = post_status(forge, &path, wrong, &status(pending, "building"));
        assert_eq!(code, 401, "{kind}");
        let long = "x".repeat(141);
        let (code, body) = post_status(forge, &path, (auth.0, &auth.1), &status("success", &long));
        let expected = match kind {
            ForgeKind::GitHub => 422,
            _ => 201,
        };
        assert_eq!(code, expected, "{kind}: {body}");
        if kind == ForgeKind::GitLab {
            // "running" again after the status ended: a new status, accepted;
            // then "running" twice for one name and sha: GitLab refuses.
            let running = status("running", "deploying");
            let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &running);
            assert_eq!(code, 201);
            let (code, body) = post_status(forge, &path, (auth.0, &auth.1), &running);
            assert_eq!(code, 400, "{body}");
            assert_eq!(
                body["message"],
                "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"
            );
            let (code, _) = post_status(
                forge,
                &path,
                (auth.0, &auth.1),
                &status("success", &"y".repeat(256)),
            );
            assert_eq!(code, 400, "over 255");
            let numeric = format!("/api/v4/projects/42/statuses/{sha}");
            let (code, _) =
                post_status(forge, &numeric, (auth.0, &auth.1), &status("success", "ok"));
            assert_eq!(code, 201);
        }
        let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &status("bogus", "x"));
        assert!(code == 422 || code == 400, "{kind}: {code}");

        forge.set_api_down(true);
        let (code, _) = post_status(forge, &path, (auth.0, &auth.1), &status("success", "done"));
        assert_eq!(code, 503, "{kind}");
        forge.set_api_down(false);
        let down = forge.statuses_while_down();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].state, "success");
        assert_eq!(down[0].answer, 503);

        let recorded = forge.statuses();
        assert_eq!(recorded[0].sha, sha);
        assert_eq!(recorded[0].context, "deployd/sambirano", "{kind}");
        assert_eq!(recorded[0].state, pending);
        assert_eq!(recorded[0].description.as_deref(), Some("building"));
        assert_eq!(
            recorded[0].target_url.as_deref(),
            Some("http://ci-1/deploys/1")
        );
        assert!(recorded[0].token_valid);
        assert_eq!(recorded[0].answer, 201);
        assert!(!recorded[1].token_valid, "{kind}");
        assert_eq!(recorded[1].answer, 401);
        assert!(recorded.windows(2).all(|pair| pair[0].at <= pair[1].at));
        assert!(recorded.iter().all(|call| call.answer != 503));
    }
}

#[test]
fn github_answers_422_for_an_unknown_commit_and_404_without_a_token() {
    let setup = setup(ForgeKind::GitHub);
    let body = serde_json::json!({"state": "success", "context": "deployd/isalo"});
    let unknown = "/repos/ops/fleet/statuses/1111111111111111111111111111111111111111";
    let bearer = format!("Bearer {TOKEN}");
    let (code, answer) = post_status(&setup.forge, unknown, ("Authorization", &bearer), &body);
    assert_eq!(code, 422);
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("No commit found"));
    let path = format!("/repos/ops/fleet/statuses/{}", setup.second);
    let (code, _) = post_status(&setup.forge, &path, ("X-Other", "1"), &body);
    assert_eq!(code, 404);
    assert!(!setup.forge.statuses()[1].token_valid);
    let (code, _) = post_status(
        &setup.forge,
        "/repos/ops/other/statuses/abc",
        ("Authorization", &bearer),
        &body,
    );
    assert_eq!(code, 404);
}
