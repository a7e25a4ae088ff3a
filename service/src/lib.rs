//! What deployd's long-running services (the host daemon `deployd` and the
//! forge service `push serve`) share with systemd: logging to journald with
//! key-value fields (plain stderr lines otherwise), the notify protocol
//! (`Type=notify` with a watchdog), one shutdown token cancelled on SIGTERM
//! or SIGINT, an accept loop that bounds what a peer can hold open, HTTPS
//! whose certificate follows its files ([`tls`]), and log lines that peers
//! can cause at will written at most once a minute ([`throttle`]).

pub mod http;
pub mod logging;
pub mod notify;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod throttle;
pub mod tls;

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on SIGTERM or SIGINT (and tells systemd it is stopping).
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot listen for signals; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    log::info!("shutting down");
    notify::stopping();
    shutdown.cancel();
}
