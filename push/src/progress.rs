//! What `push` shows while hosts deploy: on a terminal, one live line per
//! host (phase, fetched paths, elapsed time) redrawn in place; otherwise
//! plain timestamped lines.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::rollout::RolloutObserver;

/// One host's line.
#[derive(Debug, Clone)]
struct HostLine {
    phase: String,
    fetched_paths: usize,
    started: Instant,
}

/// The display, shared by the tasks that follow hosts.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
    /// Told every phase, log line and note as well (push serve's pages).
    observer: Option<Arc<dyn RolloutObserver>>,
}

struct Inner {
    live: bool,
    hosts: BTreeMap<String, HostLine>,
    drawn: usize,
}

impl Progress {
    /// Live lines when stderr is a terminal, plain lines otherwise.
    pub fn new(hosts: &[String]) -> Self {
        let now = Instant::now();
        let hosts = hosts
            .iter()
            .map(|host| {
                let line = HostLine {
                    phase: "waiting".into(),
                    fetched_paths: 0,
                    started: now,
                };
                (host.clone(), line)
            })
            .collect();
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                live: std::io::stderr().is_terminal(),
                hosts,
                drawn: 0,
            })),
            observer: None,
        }
    }

    /// This display, telling `observer` every phase, log line and note too.
    pub fn telling(self, observer: Arc<dyn RolloutObserver>) -> Self {
        Progress {
            observer: Some(observer),
            ..self
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    /// `host` entered `phase`.
    pub fn phase(&self, host: &str, phase: &str) {
        if let Some(observer) = &self.observer {
            observer.phase(host, phase);
        }
        self.with(|inner| {
            if let Some(line) = inner.hosts.get_mut(host) {
                if line.phase == phase {
                    return;
                }
                line.phase = phase.to_owned();
            }
            if inner.live {
                inner.redraw();
            } else {
                plain(host, phase);
            }
        });
    }

    /// A log line of `host`'s deploy: counted (fetched paths), shown in plain mode.
    pub fn log(&self, host: &str, line: &str) {
        if let Some(observer) = &self.observer {
            observer.line(host, line);
        }
        self.with(|inner| {
            if line.starts_with("copying path") {
                if let Some(host_line) = inner.hosts.get_mut(host) {
                    host_line.fetched_paths += 1;
                }
            }
            if inner.live {
                inner.redraw();
            } else {
                plain(host, line);
            }
        });
    }

    /// A message about `host` that is not part of its deploy.
    pub fn note(&self, host: &str, text: &str) {
        if let Some(observer) = &self.observer {
            observer.line(host, &format!("push: {text}"));
        }
        self.with(|inner| {
            if inner.live {
                inner.clear();
                eprintln!("{host}: {}", printable(text));
                inner.redraw();
            } else {
                plain(host, text);
            }
        });
    }
}

impl Inner {
    fn clear(&mut self) {
        if self.drawn > 0 {
            eprint!("\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn redraw(&mut self) {
        self.clear();
        let mut out = std::io::stderr().lock();
        for (host, line) in &self.hosts {
            let elapsed = line.started.elapsed().as_secs();
            let fetched = if line.fetched_paths > 0 {
                format!(", {} paths fetched", line.fetched_paths)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {host:<16} {:<16} {elapsed:>4}s{fetched}",
                line.phase
            );
        }
        self.drawn = self.hosts.len();
    }
}

/// Text from a host, safe to print: control characters (terminal escape
/// sequences among them) are shown escaped, never sent to the terminal, and
/// the credentials of any URL masked (a host running an earlier deployd may
/// still send them, and push's output often ends up in CI logs).
pub fn printable(text: &str) -> String {
    let text = deployd_command::redact::mask_credentials(text);
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// `HH:MM:SS host: text`, in UTC.
fn plain(host: &str, text: &str) {
    let text = printable(text);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        % 86_400;
    eprintln!(
        "{:02}:{:02}:{:02} {host}: {text}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
}
