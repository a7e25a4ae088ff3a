//! The fleet's pages, for people: `/` the fleet, `/rollouts/ID` a
//! rollout (live while it runs), `/hosts/H` a host's history. Server-rendered
//! HTML (escaped by construction: `maud`), usable without JavaScript, with
//! one small script for live updates and one style sheet, both served here
//! (`/assets/...`): a Content-Security-Policy allows nothing else. Read-only,
//! open as `/v1/status` is; put them behind the forge's login with an
//! authenticating proxy when the fleet's names should not be public.

mod fleet;
mod fleet_page;
mod host_page;
mod host_row;
pub mod journal;
mod layout;
mod rollout_page;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use deployd_protocol::{HostName, SecretKey};
use maud::{html, Markup};

use super::{now_ms, Service};
use crate::inventory::Inventory;
use crate::tls::CaFile;
use fleet::Fleet;
use fleet_page::FleetPage;
use host_page::HostPage;
use host_row::HostRow;
use journal::Journal;
use layout::{page, Depth, Live};
use rollout_page::RolloutPage;

/// What the pages keep: the rollouts' views, the hosts' answers.
pub struct Pages {
    /// The running rollout's view and the finished ones'.
    pub journal: Journal,
    fleet: Fleet,
}

impl Pages {
    /// Keeps views under `state_dir`; asks hosts with `reader`.
    pub fn new(state_dir: &std::path::Path, reader: Arc<SecretKey>) -> Self {
        Pages {
            journal: Journal::new(state_dir),
            fleet: Fleet::new(reader),
        }
    }

    /// The hosts of the push.toml last fetched, as the fleet page lists them.
    pub fn set_fleet(&self, inventory: &Inventory, ca_file: Option<&Arc<CaFile>>) {
        let targets = match inventory.all() {
            Ok(targets) => targets,
            Err(error) => {
                log::warn!("the fleet page cannot list push.toml's hosts: {error:#}");
                return;
            }
        };
        let pulling: BTreeSet<HostName> = inventory
            .hosts
            .iter()
            .filter(|(_, entry)| entry.pull)
            .map(|(name, _)| name.clone())
            .collect();
        let targets = targets
            .into_iter()
            .map(|target| target.also_trusting(ca_file))
            .collect();
        self.fleet.set_hosts(targets, pulling);
    }
}

/// The pages' routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(fleet_page))
        .route("/rollouts/{id}", get(rollout_page))
        .route("/hosts/{host}", get(host_page))
        .route("/assets/pages.css", get(style_sheet))
        .route("/assets/pages.js", get(script))
        .layer(map_response(page_headers))
}

/// Nothing but the pages' own script and style; no framing, no referrer,
/// no sniffing; pages are never cached (they change), assets for a while.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn html_answer(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    let body = html! { h1 { "Not found" } p { (what) } p { a href="../" { "The fleet" } } };
    html_answer(
        StatusCode::NOT_FOUND,
        page("Not found", Depth::Nested, Live::No, body),
    )
}

async fn style_sheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/pages.css"))
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/pages.js"),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// Each host's row, from its answer (or its channel report).
async fn host_rows(service: &Arc<Service>) -> Vec<HostRow> {
    let states = service.pages.fleet.states().await;
    states
        .iter()
        .map(|(target, state)| {
            let report = service.channel.report(&target.name);
            HostRow::new(
                target.name.as_str(),
                state,
                report.as_ref().map(|kept| &kept.report),
            )
        })
        .collect()
}

/// `GET /`.
async fn fleet_page(State(service): State<Arc<Service>>) -> Response {
    let state = super::api::queue_state(&service).await;
    let hosts = host_rows(&service).await;
    let running = state.running_id.map(|id| {
        let view = service.pages.journal.running(id);
        let branch = state
            .running
            .as_ref()
            .map_or(String::new(), |push| push.branch.clone());
        (id, branch, view.and_then(|view| view.rev))
    });
    let page = FleetPage {
        forge: service.config.forge.kind.as_str(),
        following: service
            .config
            .follow
            .iter()
            .map(|follow| {
                let deployed = state.deployed.get(&follow.branch).cloned();
                (follow.branch.clone(), deployed)
            })
            .collect(),
        running,
        queued: &state.pending,
        recent: state.history.iter().rev().collect(),
        hosts,
        now_ms: now_ms(),
    };
    html_answer(StatusCode::OK, page.render())
}

/// `GET /rollouts/ID`.
async fn rollout_page(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found("A rollout's number is a whole number.");
    };
    let state = super::api::queue_state(&service).await;
    let record = state.rollout(id);
    if record.is_none() && state.running_id != Some(id) {
        return not_found(&format!("No rollout {id} is kept."));
    }
    let view = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || service.pages.journal.view(id))
            .await
            .ok()
            .flatten()
    };
    let page = RolloutPage {
        id,
        record,
        view,
        now_ms: now_ms(),
    };
    html_answer(StatusCode::OK, page.render())
}

/// `GET /hosts/H`.
async fn host_page(State(service): State<Arc<Service>>, Path(host): Path<String>) -> Response {
    let state = super::api::queue_state(&service).await;
    let rows = host_rows(&service).await;
    let in_history = state
        .history
        .iter()
        .any(|record| record.hosts.iter().any(|outcome| outcome.host == host));
    let row = match rows.into_iter().find(|row| row.name == host) {
        Some(row) => row,
        None if in_history => HostRow {
            name: host.clone(),
            state: "-".into(),
            reachable: "-",
            note: Some("no longer in push.toml".into()),
            ..HostRow::default()
        },
        None => return not_found("No such host in push.toml nor in the rollouts kept."),
    };
    let running = state.running_id.and_then(|id| {
        let view = service.pages.journal.running(id)?;
        let phase = view.hosts.get(&host)?.phase().to_owned();
        Some((id, phase))
    });
    let page = HostPage {
        row,
        running,
        history: state.history.iter().rev().collect(),
        now_ms: now_ms(),
    };
    html_answer(StatusCode::OK, page.render())
}

#[cfg(test)]
mod tests;
