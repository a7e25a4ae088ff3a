//! Pulling: a host that nobody can reach reads its desired state from
//! channels (docs/src/design/channels.md). One poller per channel of
//! `[pull] channels` reads `CHANNEL/hosts/<host>.json`, verifies it and
//! admits it as a deploy through the same rules as `POST /v1/deploy`
//! ([`poller`]); a deploy that came from a push serve channel is reported
//! back to it, signed with the host key ([`report`]).
//!
//! [`run`] follows the config: a channel added or removed by a reload
//! (SIGHUP) gets or loses its poller within [`RESYNC`].

pub mod http;
pub mod poller;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::channel_url::ChannelUrl;
use crate::daemon::Daemon;

/// How often the configured channels are compared with the running pollers.
pub const RESYNC: Duration = Duration::from_secs(5);

/// Runs a poller per configured channel until `shutdown`.
pub async fn run(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let mut running: Vec<(ChannelUrl, CancellationToken)> = Vec::new();
    loop {
        let config = daemon.config();
        let wanted = &config.file.pull.channels;
        running.retain(|(channel, stop)| {
            let keep = wanted.contains(channel);
            if !keep {
                log::info!("channel {channel}: no longer in the config; stopped polling it");
                stop.cancel();
            }
            keep
        });
        for channel in wanted {
            if running.iter().any(|(polled, _)| polled == channel) {
                continue;
            }
            let stop = shutdown.child_token();
            tokio::spawn(poller::poll(daemon.clone(), channel.clone(), stop.clone()));
            running.push((channel.clone(), stop));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}
