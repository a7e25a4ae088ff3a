//! systemd's notify protocol: READY once the socket is bound, STATUS lines
//! while deploying, WATCHDOG pings at half of `WATCHDOG_USEC`, STOPPING on
//! shutdown. Never fatal: without `NOTIFY_SOCKET` these do nothing, and a
//! failure is only logged.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(state: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, state) {
        log::warn!("cannot notify systemd: {error}");
    }
}

/// The daemon is ready: its socket is bound.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("idle")]);
}

/// A one-line status for `systemctl status`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The daemon is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for, if any.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval until `shutdown`.
pub async fn keep_watchdog_fed(interval: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}
