//! Wall-clock time in the units the records use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Now, in Unix seconds.
pub fn now_s() -> u64 {
    now_ms() / 1000
}
