//! The forges' commit status APIs, as `push serve` calls them:
//!
//! - GitHub `POST /repos/{owner}/{repo}/statuses/{sha}`: JSON `state`
//!   (`error`, `failure`, `pending`, `success`), `target_url`,
//!   `description` (over 140 characters is 422), `context` (default
//!   `default`); `Authorization: Bearer <token>` or `token <token>`;
//!   201 (<https://docs.github.com/en/rest/commits/statuses#create-a-commit-status>).
//! - Gitea and Forgejo `POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`:
//!   the same fields, states also `warning`; `Authorization: token <token>`
//!   (or `Bearer`, or `?token=`); 201 (`routers/api/v1/repo/status.go`).
//! - GitLab `POST /api/v4/projects/{id}/statuses/{sha}`, `id` the numeric
//!   project id or the URL-encoded path (`ops%2Ffleet`): `state`
//!   (`pending`, `running`, `success`, `failed`, `canceled`, `skipped`),
//!   `name` (or `context`; default `default`), `target_url`, `description`
//!   (at most 255), as JSON, form or query parameters; `PRIVATE-TOKEN` or
//!   `Authorization: Bearer`; 201. A status still pending or running for
//!   the same name and sha moves by GitLab's state machine: `pending` twice
//!   or `running` twice is 400 "Cannot transition status via :enqueue from
//!   :pending" / ":run from :running"
//!   (<https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit>,
//!   `app/services/ci/create_commit_status_service.rb`).
//!
//! Every call is recorded, whatever the answer; while the API is "down",
//! calls are answered 503 and recorded apart.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::server::{Request, Response, MAX_API_BODY_BYTES};
use super::{ForgeKind, RecordedStatus, Shared};

/// GitHub's limit on `description`.
const GITHUB_DESCRIPTION_MAX: usize = 140;
/// GitLab's limit on `description`.
const GITLAB_DESCRIPTION_MAX: usize = 255;
/// The GitLab project id in the fixture.
pub(super) const GITLAB_PROJECT_ID: &str = "42";

/// The answer to `request` if it is one for the status API, else `None`.
pub(super) fn answer(shared: &Shared, request: &Request) -> Option<Response> {
    let sha = status_path(shared, &request.path)?;
    if request.method != "POST" {
        return Some(not_found(shared.kind));
    }
    let fields = match parameters(shared.kind, request) {
        Ok(fields) => fields,
        Err(response) => return Some(response),
    };
    let field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let context = match shared.kind {
        ForgeKind::GitLab => field("name").or_else(|| field("context")),
        _ => field("context"),
    };
    let mut recorded = RecordedStatus {
        sha: sha.to_owned(),
        context: context.unwrap_or_else(|| "default".to_owned()),
        state: field("state").unwrap_or_default(),
        description: field("description"),
        target_url: field("target_url"),
        token_valid: token_valid(shared, request),
        answer: 0,
        at: Instant::now(),
    };
    if shared.api_down.load(Ordering::SeqCst) {
        recorded.answer = 503;
        shared.record_while_down(recorded);
        return Some(Response::text(503, "Service Unavailable\n"));
    }
    let response = decide(shared, request, &recorded);
    recorded.answer = response.status;
    shared.record_status(recorded);
    Some(response)
}

/// The sha of a status path of this forge and repository.
fn status_path<'a>(shared: &Shared, path: &'a str) -> Option<&'a str> {
    let prefix = match shared.kind {
        ForgeKind::GitHub => format!("/repos/{}/statuses/", shared.owner_repo),
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            format!("/api/v1/repos/{}/statuses/", shared.owner_repo)
        }
        ForgeKind::GitLab => {
            let rest = path.strip_prefix("/api/v4/projects/")?;
            let (id, rest) = rest.split_once('/')?;
            let encoded = shared.owner_repo.replace('/', "%2F");
            let known = id == GITLAB_PROJECT_ID || id.eq_ignore_ascii_case(&encoded);
            return known.then(|| rest.strip_prefix("statuses/")).flatten();
        }
    };
    path.strip_prefix(prefix.as_str())
        .filter(|sha| !sha.is_empty() && !sha.contains('/'))
}

/// The call's fields: a JSON body (GitLab also form and query parameters).
fn parameters(kind: ForgeKind, request: &Request) -> Result<Map<String, Value>, Response> {
    if request.body.len() > MAX_API_BODY_BYTES {
        return Err(Response::json(
            413,
            &json!({"message": "Payload Too Large"}),
        ));
    }
    let mut fields = Map::new();
    if kind == ForgeKind::GitLab {
        fields.extend(form(&request.query));
        let content_type = request.header("Content-Type").unwrap_or_default();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            fields.extend(form(&String::from_utf8_lossy(&request.body)));
            return Ok(fields);
        }
    }
    if request.body.iter().all(u8::is_ascii_whitespace) && kind == ForgeKind::GitLab {
        return Ok(fields);
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(object)) => {
            fields.extend(object);
            Ok(fields)
        }
        _ => Err(match kind {
            ForgeKind::GitHub => Response::json(
                400,
                &json!({"message": "Problems parsing JSON",
                        "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
                        "status": "400"}),
            ),
            ForgeKind::GitLab => Response::json(400, &json!({"error": "400 Bad request"})),
            _ => Response::json(422, &json!({"message": "invalid JSON", "url": ""})),
        }),
    }
}

fn form(text: &str) -> Map<String, Value> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), Value::String(decode(value))))
        .collect()
}

/// Percent-decoding of a form value (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' if at + 2 < bytes.len() => {
                let digits = std::str::from_utf8(&bytes[at + 1..at + 3]).ok();
                match digits.and_then(|digits| u8::from_str_radix(digits, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        at += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn token_valid(shared: &Shared, request: &Request) -> bool {
    let authorization = request.header("Authorization").unwrap_or_default();
    let bearer = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("token "));
    let given = match shared.kind {
        ForgeKind::GitHub => bearer.map(str::to_owned),
        ForgeKind::Gitea | ForgeKind::Forgejo => bearer.map(str::to_owned).or_else(|| {
            form(&request.query)
                .into_iter()
                .find(|(key, _)| key == "token" || key == "access_token")
                .and_then(|(_, value)| value.as_str().map(str::to_owned))
        }),
        ForgeKind::GitLab => request
            .header("PRIVATE-TOKEN")
            .map(str::to_owned)
            .or_else(|| authorization.strip_prefix("Bearer ").map(str::to_owned)),
    };
    given.as_deref() == Some(shared.token.as_str())
}

fn token_given(kind: ForgeKind, request: &Request) -> bool {
    request.header("Authorization").is_some()
        || (kind == ForgeKind::GitLab && request.header("PRIVATE-TOKEN").is_some())
        || request.query.contains("token=")
}

/// The forge's answer to a recorded call.
fn decide(shared: &Shared, request: &Request, call: &RecordedStatus) -> Response {
    let kind = shared.kind;
    if !call.token_valid {
        return unauthorized(kind, token_given(kind, request));
    }
    let states: &[&str] = match kind {
        ForgeKind::GitHub => &["error", "failure", "pending", "success"],
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            &["pending", "success", "error", "failure", "warning"]
        }
        ForgeKind::GitLab => &[
            "pending", "running", "success", "failed", "canceled", "skipped",
        ],
    };
    if !states.contains(&call.state.as_str()) {
        return invalid(kind, "state", &format!("state is not one of {states:?}"));
    }
    let description = call.description.as_deref().unwrap_or_default();
    let limit = match kind {
        ForgeKind::GitHub => Some(GITHUB_DESCRIPTION_MAX),
        ForgeKind::GitLab => Some(GITLAB_DESCRIPTION_MAX),
        _ => None,
    };
    if let Some(limit) = limit.filter(|limit| description.chars().count() > *limit) {
        let message = format!("is too long (maximum is {limit} characters)");
        return invalid(kind, "description", &message);
    }
    if kind != ForgeKind::Gitea && kind != ForgeKind::Forgejo {
        let full = shared.repository.commit_of(&call.sha);
        if full.is_none() || call.sha.len() < 7 {
            return match kind {
                ForgeKind::GitLab => {
                    Response::json(404, &json!({"message": "404 Commit Not Found"}))
                }
                _ => Response::json(
                    422,
                    &json!({"message": format!("No commit found for SHA: {}", call.sha),
                            "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
                            "status": "422"}),
                ),
            };
        }
    }
    if kind == ForgeKind::GitLab {
        if let Err(message) = shared.gitlab_transition(&call.sha, &call.context, &call.state) {
            return Response::json(400, &json!({ "message": message }));
        }
    }
    created(shared, call)
}

fn unauthorized(kind: ForgeKind, token_given: bool) -> Response {
    match kind {
        // An unauthenticated call to a private repository is 404 on GitHub.
        ForgeKind::GitHub if !token_given => not_found(kind),
        ForgeKind::GitHub => Response::json(
            401,
            &json!({"message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                    "status": "401"}),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo if !token_given => not_found(kind),
        ForgeKind::Gitea | ForgeKind::Forgejo => Response::json(
            401,
            &json!({"message": "user does not exist [uid: 0, name: ]", "url": ""}),
        ),
        ForgeKind::GitLab => Response::json(401, &json!({"message": "401 Unauthorized"})),
    }
}

fn not_found(kind: ForgeKind) -> Response {
    match kind {
        ForgeKind::GitHub => Response::json(
            404,
            &json!({"message": "Not Found",
                    "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
                    "status": "404"}),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo => Response::json(
            404,
            &json!({"errors": ["The target couldn't be found."], "message": "The target couldn't be found.", "url": ""}),
        ),
        ForgeKind::GitLab => Response::json(404, &json!({"message": "404 Project Not Found"})),
    }
}

fn invalid(kind: ForgeKind, field: &str, message: &str) -> Response {
    match kind {
        ForgeKind::GitHub => Response::json(
            422,
            &json!({"message": "Validation Failed",
                    "errors": [{"resource": "Status", "code": "custom", "field": field,
                                "message": format!("{field} {message}")}],
                    "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
                    "status": "422"}),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo => Response::json(
            422,
            &json!({"message": format!("{field}: {message}"), "url": ""}),
        ),
        ForgeKind::GitLab if field == "state" => {
            Response::json(400, &json!({"error": "state does not have a valid value"}))
        }
        ForgeKind::GitLab => Response::json(400, &json!({"message": {field: [message]}})),
    }
}

fn created(shared: &Shared, call: &RecordedStatus) -> Response {
    let id = shared.next_status_id();
    let now = rfc3339_now();
    let body = match shared.kind {
        ForgeKind::GitHub => json!({
            "url": format!("{}/repos/{}/statuses/{}", shared.api_url, shared.owner_repo, call.sha),
            "id": id, "node_id": format!("SC_{id}"), "state": call.state,
            "description": call.description, "target_url": call.target_url,
            "context": call.context, "created_at": now, "updated_at": now,
        }),
        ForgeKind::Gitea | ForgeKind::Forgejo => json!({
            "id": id, "status": call.state, "target_url": call.target_url.clone().unwrap_or_default(),
            "description": call.description.clone().unwrap_or_default(),
            "url": format!("{}/api/v1/repos/{}/statuses/{}", shared.api_url, shared.owner_repo, call.sha),
            "context": call.context, "created_at": now, "updated_at": now,
        }),
        ForgeKind::GitLab => json!({
            "id": id, "sha": call.sha, "ref": "main", "status": call.state, "name": call.context,
            "target_url": call.target_url, "description": call.description,
            "created_at": now, "started_at": null, "finished_at": null,
            "allow_failure": false, "coverage": null, "pipeline_id": 1,
        }),
    };
    Response::json(201, &body)
}

/// The time now as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// GitLab's state machine for an external commit status that is still
/// `pending` or `running` (`current`; `None`: a new one, `created`): the
/// state it moves to, or GitLab's error.
pub(super) fn gitlab_next(current: Option<&str>, state: &str) -> Result<Option<String>, String> {
    let from = current.unwrap_or("created");
    let refuse = |event: &str| {
        Err(format!(
            "Cannot transition status via :{event} from :{from} (Reason(s): Status cannot transition via \"{event}\")"
        ))
    };
    match (state, from) {
        ("pending", "created") => Ok(Some("pending".to_owned())),
        ("pending", _) => refuse("enqueue"),
        ("running", "created" | "pending") => Ok(Some("running".to_owned())),
        ("running", _) => refuse("run"),
        ("skipped", "created" | "pending") => Ok(None),
        ("skipped", _) => refuse("skip"),
        // success, failed and canceled end the status from any open state.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_refuses_the_same_open_state_twice() {
        assert_eq!(gitlab_next(None, "pending"), Ok(Some("pending".into())));
        assert_eq!(gitlab_next(None, "running"), Ok(Some("running".into())));
        assert_eq!(
            gitlab_next(Some("pending"), "running"),
            Ok(Some("running".into()))
        );
        assert_eq!(
            gitlab_next(Some("running"), "running"),
            Err("Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")".into())
        );
        assert!(gitlab_next(Some("pending"), "pending")
            .expect_err("twice")
            .starts_with("Cannot transition status via :enqueue from :pending"));
        assert!(gitlab_next(Some("running"), "pending").is_err());
        assert_eq!(gitlab_next(Some("running"), "success"), Ok(None));
        assert_eq!(gitlab_next(None, "failed"), Ok(None));
    }

    #[test]
    fn form_values_are_decoded() {
        let fields = form("state=running&name=deployd%2Fsambirano&description=building+it");
        assert_eq!(fields["state"], "running");
        assert_eq!(fields["name"], "deployd/sambirano");
        assert_eq!(fields["description"], "building it");
        assert_eq!(decode("100%"), "100%");
    }

    #[test]
    fn dates_are_rfc3339() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
