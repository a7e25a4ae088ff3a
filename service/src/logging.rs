//! Logging through the `log` facade: to journald (with the key-values as
//! fields: `DEPLOY_ID`, `STORE_PATH`, `REV`, ...) when stderr is connected to
//! the journal, else plain lines on stderr.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Installs the logger for the program called `identifier` (journald's
/// `SYSLOG_IDENTIFIER`); `verbose` adds debug messages.
pub fn init(identifier: &str, verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal.with_syslog_identifier(identifier.to_owned());
                if journal.install().is_ok() {
                    log::set_max_level(level);
                    return;
                }
            }
            Err(error) => {
                eprintln!("{identifier}: cannot log to the journal ({error}); using stderr")
            }
        }
    }
    if log::set_boxed_logger(Box::new(StderrLog)).is_ok() {
        log::set_max_level(level);
    }
}

/// `LEVEL message key=value ...` on stderr.
struct StderrLog;

struct Collect(String);

impl<'kvs> log::kv::VisitSource<'kvs> for Collect {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut fields = Collect(String::new());
        let _ = record.key_values().visit(&mut fields);
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let _ = writeln!(std::io::stderr(), "{level}: {}{}", record.args(), fields.0);
    }

    fn flush(&self) {}
}
