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

/// The watchdog interval systemd asked for, if any: `WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is unset or names this process (as libsystemd's
/// `sd_watchdog_enabled` reads them).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
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
