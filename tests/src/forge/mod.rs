//! A stand-in for a git forge (GitHub, Gitea, Forgejo or GitLab), for the
//! end-to-end tests of `push serve` and for `lab demo`. It is not a forge:
//! it has no UI and no users; git over HTTP wants a login only when asked
//! to ([`ForgeStandIn::require_git_login`]). With a certificate
//! ([`ForgeOptions::tls`]) it serves HTTPS (rustls) on a second port, and
//! its status API there only. What it reproduces faithfully is what
//! `push serve` meets:
//!
//! - **hooks**: the forge's push hooks for a ref update, shaped as the
//!   forge's documented payload ([`payload`]), with its headers, delivery
//!   ids and signature or token ([`deliver`]); the forge's test delivery
//!   (GitHub's `ping`); any hand-made hook for the negative tests; GitHub's
//!   redelivery of the same bytes under the same id;
//! - **git over HTTP** through git's own `git http-backend` ([`cgi`]):
//!   `git clone`, `fetch` and `push` at [`ForgeStandIn::git_url`]; a push
//!   sends the push hooks itself, as the forge does;
//! - **the commit status API** ([`statuses`]): every call recorded, the
//!   token checked, the forge's validation and errors, an outage on demand;
//!   over HTTPS only when it has a certificate.
//!
//! [`ForgeStandIn::start`] serves on its own thread until
//! [`ForgeStandIn::stop`] or drop, which join every thread it started.

mod cgi;
mod deliver;
mod json_text;
mod payload;
mod repo;
mod server;
pub mod sign;
mod statuses;
mod types;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use anyhow::{bail, Context, Result};

use payload::{Outgoing, Source};
use repo::Repository;
use server::Speaks;
pub use types::{
    Delivery, ForgeKind, ForgeOptions, HookResponse, PushEvent, RawHook, RecordedStatus, Signature,
};

/// The forge stand-in: an HTTP server (git and the status API), an HTTPS
/// one when it has a certificate, and a hook sender. Stops on drop.
pub struct ForgeStandIn {
    shared: Arc<Shared>,
    /// The plain HTTP listener's address.
    address: SocketAddr,
    /// The HTTPS listener's address, when there is one.
    tls_address: Option<SocketAddr>,
    /// The accepting threads, joined on stop.
    accept: Vec<JoinHandle<()>>,
}

/// What the server's threads share with the handle.
pub(crate) struct Shared {
    kind: ForgeKind,
    owner_repo: String,
    webhook_url: String,
    secret: String,
    token: String,
    /// The API's base URL: `https://` when the stand-in has TLS.
    api_url: String,
    /// The plain HTTP listener's base URL (git over HTTP).
    http_url: String,
    repository: Repository,
    /// Where `owner/name.git` links to the repository, for `git http-backend`.
    project_root: tempfile::TempDir,
    /// Set once, on stop: the accept loop ends at its next connection.
    stopping: AtomicBool,
    /// While set, the status API answers 503.
    api_down: AtomicBool,
    /// Numbers the statuses the API creates.
    status_ids: AtomicU64,
    /// Every status call, in order (outside an outage).
    statuses: Mutex<Vec<RecordedStatus>>,
    /// Status calls refused during an outage.
    down_attempts: Mutex<Vec<RecordedStatus>>,
    /// GitLab's open (pending or running) statuses by (sha, name).
    gitlab_open: Mutex<HashMap<(String, String), String>>,
    /// Every hook sent, in order.
    deliveries: Mutex<Vec<Delivery>>,
    /// One receive-pack at a time, so each push's ref changes are its own.
    push_lock: Mutex<()>,
    /// When set, git over HTTP wants HTTP Basic with this user and password
    /// (a private repository's access token, as the forges take it).
    git_login: Mutex<Option<(String, String)>>,
    /// Connection and hook-sending threads, joined on stop.
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Whether an `Authorization` header passes git over HTTP.
    fn git_login_accepted(&self, authorization: Option<&str>) -> bool {
        use base64::Engine;
        let Some((user, password)) = lock(&self.git_login).clone() else {
            return true;
        };
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        authorization
            .and_then(|value| value.strip_prefix("Basic "))
            .is_some_and(|given| given.trim() == expected)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide what was recorded.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ForgeStandIn {
    /// Starts serving `options.repository` as `options.kind` would.
    pub fn start(options: ForgeOptions) -> Result<ForgeStandIn> {
        if options.owner_repo.split('/').count() != 2
            || options.owner_repo.split('/').any(str::is_empty)
        {
            bail!(
                "the repository path must be owner/name, not {:?}",
                options.owner_repo
            );
        }
        let repository = Repository::open(&options.repository)?;
        let project_root = cgi::project_root(&repository, &options.owner_repo)?;
        let listener = TcpListener::bind(options.listen)
            .with_context(|| format!("binding {}", options.listen))?;
        let address = listener.local_addr()?;
        let tls = match &options.tls {
            Some(identity) => {
                let config = identity.server_config()?;
                let listen = SocketAddr::new(options.listen.ip(), 0);
                let listener = TcpListener::bind(listen)
                    .with_context(|| format!("binding {listen} for HTTPS"))?;
                Some((listener, config))
            }
            None => None,
        };
        let tls_address = match &tls {
            Some((listener, _)) => Some(listener.local_addr()?),
            None => None,
        };
        let api_url = match tls_address {
            Some(tls_address) => format!("https://{tls_address}"),
            None => format!("http://{address}"),
        };
        let shared = Arc::new(Shared {
            kind: options.kind,
            owner_repo: options.owner_repo,
            webhook_url: options.webhook_url,
            secret: options.secret,
            token: options.token,
            api_url,
            http_url: format!("http://{address}"),
            repository,
            project_root,
            stopping: AtomicBool::new(false),
            api_down: AtomicBool::new(false),
            status_ids: AtomicU64::new(1),
            statuses: Mutex::new(Vec::new()),
            down_attempts: Mutex::new(Vec::new()),
            gitlab_open: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(Vec::new()),
            push_lock: Mutex::new(()),
            git_login: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
        });
        let mut listeners = vec![(listener, Speaks::Http { api: tls.is_none() })];
        if let Some((listener, config)) = tls {
            listeners.push((listener, Speaks::Https(config)));
        }
        let mut accept = Vec::new();
        for (listener, speaks) in listeners {
            let serving = Arc::clone(&shared);
            let thread = thread::Builder::new()
                .name(format!("forge-{}", options.kind))
                .spawn(move || server::serve(listener, serving, speaks))
                .context("starting the forge's server thread")?;
            accept.push(thread);
        }
        Ok(ForgeStandIn {
            shared,
            address,
            tls_address,
            accept,
        })
    }

    /// The forge played.
    pub fn kind(&self) -> ForgeKind {
        self.shared.kind
    }

    /// The API's base URL (the service config's `forge.api_url`; for
    /// GitHub the API root itself): `https://ADDR` when the stand-in has
    /// TLS, else `http://ADDR`.
    pub fn api_url(&self) -> String {
        self.shared.api_url.clone()
    }

    /// The repository's clone URL over plain HTTP, `http://ADDR/owner/name.git`.
    pub fn git_url(&self) -> String {
        format!("{}/{}.git", self.shared.http_url, self.shared.owner_repo)
    }

    /// The base URL of the HTTPS listener, `https://ADDR`, when the
    /// stand-in has TLS; its clone URL is this and `/owner/name.git`.
    pub fn https_url(&self) -> Option<String> {
        self.tls_address.map(|address| format!("https://{address}"))
    }

    /// Sends the forge's hooks for one ref update, as signed by the forge,
    /// and answers the receiver's response to the push (for a branch
    /// deleted on Gitea or Forgejo, to the `delete` event, the only one
    /// sent). Every hook sent is in [`ForgeStandIn::hook_deliveries`].
    pub fn push_hook(&self, push: &PushEvent) -> Result<HookResponse> {
        self.shared.push_hook(push)
    }

    /// Sends a hand-made hook with the forge's headers.
    pub fn send_hook(&self, hook: &RawHook) -> Result<HookResponse> {
        let outgoing = Outgoing {
            event: hook.event.clone(),
            body: hook.body.clone(),
            reference: None,
            after: None,
        };
        self.shared
            .send(&outgoing, hook.signature, &hook.extra_headers)
    }

    /// The forge's test delivery: GitHub's `ping`; Gitea's and Forgejo's
    /// "Test Delivery" and GitLab's "Test" push event, both a push hook of
    /// the default branch (see [`payload`]).
    pub fn ping(&self) -> Result<HookResponse> {
        let outgoing = self.shared.source().test_delivery()?;
        self.shared.send(&outgoing, Signature::Correct, &[])
    }

    /// Sends `delivery` again, the same bytes and headers. GitHub and
    /// GitLab keep its delivery id (GitLab's `Idempotency-Key`); Gitea and
    /// Forgejo replay it under a new one, as their "Replay" does.
    pub fn redeliver(&self, delivery: &Delivery) -> Result<HookResponse> {
        self.shared.redeliver(delivery)
    }

    /// Every commit status call received, in order (not those refused
    /// during an outage).
    pub fn statuses(&self) -> Vec<RecordedStatus> {
        lock(&self.shared.statuses).clone()
    }

    /// The status calls answered 503 while the API was down.
    pub fn statuses_while_down(&self) -> Vec<RecordedStatus> {
        lock(&self.shared.down_attempts).clone()
    }

    /// Makes git over HTTP want HTTP Basic with `user` and `password`, as a
    /// forge does for a private repository (401 with `WWW-Authenticate`
    /// otherwise); `None` serves it to anyone again.
    pub fn require_git_login(&self, login: Option<(&str, &str)>) {
        *lock(&self.shared.git_login) =
            login.map(|(user, password)| (user.to_owned(), password.to_owned()));
    }

    /// Takes the status API down (every call answered 503) or back up.
    pub fn set_api_down(&self, down: bool) {
        self.shared.api_down.store(down, Ordering::SeqCst);
    }

    /// Every hook sent, in order.
    pub fn hook_deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared.deliveries).clone()
    }

    /// The all-zero object name of the repository's hash, for deletions.
    pub fn zero_id(&self) -> Result<String> {
        self.shared.repository.zero_id()
    }

    /// Stops serving and joins every thread the stand-in started (hooks
    /// still being sent after a push are sent first).
    pub fn stop(&mut self) {
        if self.accept.is_empty() {
            return;
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loops; each sees `stopping` and ends.
        for address in std::iter::once(self.address).chain(self.tls_address) {
            let _ = TcpStream::connect(address);
        }
        for accept in self.accept.drain(..) {
            let _ = accept.join();
        }
        loop {
            let workers: Vec<_> = lock(&self.shared.workers).drain(..).collect();
            if workers.is_empty() {
                break;
            }
            for worker in workers {
                let _ = worker.join();
            }
        }
    }
}

impl Drop for ForgeStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn source(&self) -> Source<'_> {
        Source {
            kind: self.kind,
            repository: &self.repository,
            owner_repo: &self.owner_repo,
        }
    }

    fn push_hook(&self, push: &PushEvent) -> Result<HookResponse> {
        let hooks = self.source().push(push)?;
        let mut answer = None;
        for hook in &hooks {
            let response = self.send(hook, Signature::Correct, &[])?;
            if answer.is_none() || hook.event != "delete" {
                answer = Some(response);
            }
        }
        answer.context("the forge sends no hook for this update")
    }

    fn send(
        &self,
        outgoing: &Outgoing,
        signature: Signature,
        extra_headers: &[(String, String)],
    ) -> Result<HookResponse> {
        let headers = deliver::HookHeaders {
            secret: &self.secret,
            signature,
            instance: &self.api_url,
        };
        let mut request = deliver::request(self.kind, &headers, &outgoing.event, &outgoing.body);
        deliver::override_headers(&mut request.headers, extra_headers);
        let delivery = Delivery {
            event: outgoing.event.clone(),
            delivery_id: request.delivery_id.clone(),
            reference: outgoing.reference.clone(),
            after: outgoing.after.clone(),
            status: None,
            headers: request.headers,
            body: request.body,
            redelivery: false,
        };
        self.deliver(delivery)
    }

    fn redeliver(&self, earlier: &Delivery) -> Result<HookResponse> {
        let mut delivery = earlier.clone();
        delivery.redelivery = true;
        delivery.status = None;
        if matches!(self.kind, ForgeKind::Gitea | ForgeKind::Forgejo) {
            let id = deliver::new_uuid();
            for (name, value) in &mut delivery.headers {
                if name.ends_with("-Delivery") {
                    value.clone_from(&id);
                }
            }
            delivery.delivery_id = id;
        }
        self.deliver(delivery)
    }

    fn deliver(&self, mut delivery: Delivery) -> Result<HookResponse> {
        let result = deliver::post(&self.webhook_url, &delivery.headers, &delivery.body);
        delivery.status = result.as_ref().ok().map(|response| response.status);
        lock(&self.deliveries).push(delivery);
        result
    }

    /// Sends the push hooks of `updates` from a thread of their own, as a
    /// forge does after a push.
    fn send_in_background(self: &Arc<Self>, updates: Vec<PushEvent>) {
        if updates.is_empty() {
            return;
        }
        let shared = Arc::clone(self);
        let worker = thread::spawn(move || {
            for update in &updates {
                // A receiver that is down is the test's to notice, in
                // `hook_deliveries`.
                let _ = shared.push_hook(update);
            }
        });
        self.track(worker);
    }

    fn track(&self, worker: JoinHandle<()>) {
        let mut workers = lock(&self.workers);
        workers.retain(|worker| !worker.is_finished());
        workers.push(worker);
    }

    fn record_status(&self, status: RecordedStatus) {
        lock(&self.statuses).push(status);
    }

    fn record_while_down(&self, status: RecordedStatus) {
        lock(&self.down_attempts).push(status);
    }

    fn next_status_id(&self) -> u64 {
        self.status_ids.fetch_add(1, Ordering::SeqCst)
    }

    /// Moves GitLab's open status for (`sha`, `name`) to `state`, or answers
    /// GitLab's refusal.
    fn gitlab_transition(&self, sha: &str, name: &str, state: &str) -> Result<(), String> {
        let mut open = lock(&self.gitlab_open);
        let key = (sha.to_owned(), name.to_owned());
        match statuses::gitlab_next(open.get(&key).map(String::as_str), state)? {
            Some(next) => open.insert(key, next),
            None => open.remove(&key),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
