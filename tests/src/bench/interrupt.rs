//! Ctrl-C (SIGINT) or SIGTERM during the benchmark: the labs this process
//! owns are taken down before it exits (status 130), whatever it was doing.
//! The benchmark's own teardown and this one take [`TEARDOWN`] first, so
//! they never run at once.

use std::sync::Mutex;

use anyhow::{Context, Result};
use deployd_lab::{labs_owned_by, teardown, ProcessId};
use tokio::signal::unix::{signal, SignalKind};

/// Held by whoever is taking a lab down.
pub static TEARDOWN: Mutex<()> = Mutex::new(());

/// From now on, SIGINT and SIGTERM take this process's labs down, then end it.
pub fn take_labs_down_on_signal() -> Result<()> {
    let me = ProcessId::current()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("a runtime for signals")?;
    // Registered here, before this returns, so no signal is missed.
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
            // Never released: the process ends holding it.
            let _teardown = TEARDOWN
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            eprintln!("lab: interrupted; taking the lab down");
            for lab in labs_owned_by(me) {
                if let Err(error) = teardown(&lab) {
                    eprintln!("lab: {error:#}");
                }
            }
            std::process::exit(130);
        })
        .context("starting the signal thread")?;
    Ok(())
}
