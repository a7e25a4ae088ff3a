//! What the fleet page knows of each host: its `/v1/status` (asked with
//! push serve's own key, which hosts trust to read), or, for a host that
//! pulls, its newest report to the channel. The answers are kept for
//! [`FRESH_FOR`] and asked again by one request at a time, so that readers
//! of the pages, however many, never make push serve ask the fleet more
//! than once in that time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployd_protocol::api::StatusResponse;
use deployd_protocol::{HostName, SecretKey};

use crate::client::Client;
use crate::inventory::Target;

/// How long the hosts' answers are shown before they are asked again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long a host may take to answer the fleet page's question.
const ASK_TIMEOUT: Duration = Duration::from_secs(4);

/// What is known of one host.
#[derive(Debug, Clone)]
pub enum HostState {
    /// Its `/v1/status`.
    Answered(Box<StatusResponse>),
    /// It did not answer, and why.
    Unreachable(String),
    /// It pulls: it is never called (its reports are the channel's).
    Pulls,
}

/// Every host with what was learnt of it.
pub type HostStates = Arc<Vec<(Target, HostState)>>;

/// The fleet's hosts as push.toml names them, and their answers.
pub struct Fleet {
    hosts: Mutex<(Vec<Target>, BTreeSet<HostName>)>,
    client: Client,
    /// The last answers and when they were asked.
    answers: tokio::sync::Mutex<Option<(Instant, HostStates)>>,
}

impl Fleet {
    /// Asks hosts with `reader` (push serve's deploy key).
    pub fn new(reader: Arc<SecretKey>) -> Self {
        Fleet {
            hosts: Mutex::new((Vec::new(), BTreeSet::new())),
            client: Client::new(Some(reader)).with_request_timeout(ASK_TIMEOUT),
            answers: tokio::sync::Mutex::new(None),
        }
    }

    /// The hosts of the push.toml last fetched (`pulling`: those that pull).
    pub fn set_hosts(&self, targets: Vec<Target>, pulling: BTreeSet<HostName>) {
        *self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (targets, pulling);
    }

    /// Every host with what is known of it, asked at most [`FRESH_FOR`] ago.
    pub async fn states(&self) -> HostStates {
        // One asker at a time: the others wait for its answers.
        let mut answers = self.answers.lock().await;
        if let Some((at, kept)) = answers.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return kept.clone();
            }
        }
        let (targets, pulling) = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let asks = targets.into_iter().map(|target| {
            let client = &self.client;
            let pulls = pulling.contains(&target.name);
            async move {
                let state = if pulls {
                    HostState::Pulls
                } else {
                    match client.status(&target).await {
                        Ok(status) => HostState::Answered(Box::new(status)),
                        Err(error) => HostState::Unreachable(error.to_string()),
                    }
                };
                (target, state)
            }
        });
        let fresh = Arc::new(futures_util::future::join_all(asks).await);
        *answers = Some((Instant::now(), fresh.clone()));
        fresh
    }
}
