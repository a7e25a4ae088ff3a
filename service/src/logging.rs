//! Logging through the `log` facade: to journald (with the key-values as
//! fields: `DEPLOY_ID`, `STORE_PATH`, `REV`, ...) when stderr is connected to
//! the journal, else plain lines on stderr. Either way a message has the
//! credentials of any URL in it masked, whoever wrote it.

use std::borrow::Cow;
use std::io::Write;

use deployd_command::redact::mask_credentials;
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
                if log::set_boxed_logger(Box::new(Masked(journal))).is_ok() {
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

/// Hands records on to the journal with credentials masked in the message.
/// (The key-value fields are ids, store paths, revisions and key names:
/// never a URL.)
struct Masked<L>(L);

impl<L: Log> Log for Masked<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        let message = record.args().to_string();
        match mask_credentials(&message) {
            Cow::Borrowed(_) => self.0.log(record),
            Cow::Owned(masked) => self
                .0
                .log(&record.to_builder().args(format_args!("{masked}")).build()),
        }
    }

    fn flush(&self) {
        self.0.flush()
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
        let line = format!("{level}: {}{}", record.args(), fields.0);
        let _ = writeln!(std::io::stderr(), "{}", mask_credentials(&line));
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keeps what it is given.
    #[derive(Default)]
    struct Kept(Mutex<Vec<(String, String)>>);

    struct Fields(String);

    impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            self.0.push_str(&format!("{key}={value}"));
            Ok(())
        }
    }

    impl Log for &Kept {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &Record<'_>) {
            let mut fields = Fields(String::new());
            let _ = record.key_values().visit(&mut fields);
            self.0
                .lock()
                .expect("lock")
                .push((record.args().to_string(), fields.0));
        }

        fn flush(&self) {}
    }

    #[test]
    fn the_journal_gets_messages_masked_and_fields_kept() {
        let kept = Kept::default();
        let logger = Masked(&kept);
        let fields = [("deploy_id", "d1")];
        for message in [
            format_args!("deploy d1: failed: unable to download 'http://alice:s3cret@cache/x'"),
            format_args!("deploy d1: succeeded"),
        ] {
            logger.log(
                &Record::builder()
                    .args(message)
                    .level(Level::Warn)
                    .key_values(&fields)
                    .build(),
            );
        }
        let kept = kept.0.lock().expect("lock");
        assert_eq!(
            kept[0],
            (
                "deploy d1: failed: unable to download 'http://alice:***@cache/x'".to_owned(),
                "deploy_id=d1".to_owned()
            )
        );
        assert_eq!(kept[1].0, "deploy d1: succeeded");
    }
}
