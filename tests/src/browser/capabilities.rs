//! What the lab asks of Chromium when it opens a WebDriver session: the
//! program, its flags and the window, as a pure function so that a unit
//! test can read them exactly.

use std::path::Path;

use serde_json::{json, Map, Value};

/// Debian's Chromium (package `chromium`): a launcher script that adds the
/// distribution's flags from `/etc/chromium.d` and runs the real binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), built from the same
/// source as [`CHROMIUM`], so their versions always match.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A window's inner size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
}

/// A phone held upright (a common 6.1" phone's viewport).
pub const PHONE: WindowSize = WindowSize {
    width: 390,
    height: 844,
};
/// A laptop's browser window.
pub const DESKTOP: WindowSize = WindowSize {
    width: 1280,
    height: 900,
};

/// Chromium's flags, each with the reason it is there.
const FLAGS: &[&str] = &[
    // No display on a test machine; `--headless` is Chromium's own
    // (the "new" headless mode, the same browser as on screen).
    "--headless",
    // Chromium's sandbox refuses to run as root, which the lab tests are.
    "--no-sandbox",
    // No GPU: software rendering, as on any server.
    "--disable-gpu",
    // The lab's servers speak HTTP/1.1 over TCP; no QUIC probes.
    "--disable-quic",
    "--no-first-run",
    // Without these three, Chromium calls Google's hosts (safe browsing,
    // component and extension updates, sync) at start: on a closed network
    // those calls are refused, and they slow the start and fill the log.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The new-session capabilities for a Chromium with a fresh profile in
/// `user_data_dir` and a window of `size`.
pub fn chromium_capabilities(user_data_dir: &Path, size: WindowSize) -> Map<String, Value> {
    let mut args: Vec<String> = FLAGS.iter().map(|flag| flag.to_string()).collect();
    args.push(format!("--user-data-dir={}", user_data_dir.display()));
    args.push(format!("--window-size={},{}", size.width, size.height));
    let mut capabilities = Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    capabilities
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_runs_headless_with_its_own_profile_and_no_background_calls() {
        let capabilities = chromium_capabilities(Path::new("/tmp/profile"), PHONE);
        assert_eq!(capabilities["browserName"], "chrome");
        let options = &capabilities["goog:chromeOptions"];
        assert_eq!(options["binary"], "/usr/bin/chromium");
        let args: Vec<&str> = options["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| arg.as_str().expect("a string"))
            .collect();
        assert_eq!(
            args,
            [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--user-data-dir=/tmp/profile",
                "--window-size=390,844",
            ]
        );
    }
}
