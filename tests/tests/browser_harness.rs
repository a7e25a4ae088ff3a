//! The lab's browser harness (`deployd_lab::browser`) against a real headless
//! Chromium and chromedriver (Debian's), on a page served by the lab's own
//! static server on loopback: the browser sees a page's text change under
//! JavaScript without a reload, a phone-sized window is narrow, a screenshot
//! is a PNG of the whole page, and nothing of the browser (process group,
//! Chromium, temporary directory) is left after a drop, also after a panic
//! or once the browser died (whose errors then quote chromedriver's log).
//! No lab is needed; Chromium and chromedriver are (scripts/install-deps):
//! without them every test fails, never skips.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use deployd_lab::browser::{
    group_has_running_process, png_size, process_group, screenshot_dir, Browser,
};
use deployd_lab::http::{serve, Pace};
use support::processes_using;

/// A page whose status line changes 300 ms after the test calls
/// `startChange()`, with a body far taller than any window, and a token
/// drawn once per load (a reload would draw another).
const PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>browser harness</title>
</head>
<body>
<p id="status">waiting for the script</p>
<div style="height: 3000px; background: linear-gradient(#fff, #9cf)">a tall page</div>
<script>
window.loadToken = Math.random();
window.startChange = function () {
  setTimeout(function () {
    document.getElementById("status").textContent = "changed by the script";
  }, 300);
};
</script>
</body>
</html>
"#;

/// Serves [`PAGE`] as `/index.html` from the lab's static server on a free
/// loopback port; returns the directory (kept as long as the test) and
/// the page's URL.
fn serve_page() -> (tempfile::TempDir, String) {
    let root = tempfile::tempdir().expect("a directory for the page");
    std::fs::write(root.path().join("index.html"), PAGE).expect("writing the page");
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let address = listener.local_addr().expect("the server's address");
    let served = root.path().to_owned();
    std::thread::spawn(move || serve(&served, listener, Pace::default(), None));
    (root, format!("http://{address}/index.html"))
}

fn start_browser() -> Browser {
    let started = Instant::now();
    let browser = Browser::start().expect("starting Chromium through chromedriver");
    eprintln!("browser started in {} ms", started.elapsed().as_millis());
    browser
}

#[test]
fn the_browser_sees_a_page_change_under_javascript_without_a_reload() {
    let (_root, url) = serve_page();
    let browser = start_browser();
    browser.open(&url).expect("opening the page");
    assert_eq!(browser.current_url().expect("the URL"), url);
    assert_eq!(
        browser.text_of("#status").expect("the status"),
        "waiting for the script"
    );
    let token = browser.eval("return window.loadToken;").expect("the token");
    assert!(token.is_number(), "the page's script ran: {token}");

    browser
        .eval("window.startChange(); return null;")
        .expect("starting the change");
    let changed = browser
        .wait_for_text("#status", "changed", Duration::from_secs(10))
        .expect("the changed status");
    assert_eq!(changed, "changed by the script");
    assert_eq!(
        browser.eval("return window.loadToken;").expect("the token"),
        token,
        "the page was not reloaded"
    );

    let error = browser
        .wait_for_text("#status", "never there", Duration::from_millis(300))
        .expect_err("a text the page never shows");
    let message = format!("{error:#}");
    assert!(
        message.contains("never there") && message.contains("changed by the script"),
        "the error names what was awaited and what was seen last: {message}"
    );
    let error = browser.text_of("#missing").expect_err("no element matches");
    assert!(
        format!("{error:#}").contains("#missing"),
        "the error names the selector: {error:#}"
    );
    browser.close().expect("closing the browser");
}

#[test]
fn a_phone_window_is_narrow_and_screenshots_are_whole_page_pngs() {
    let (_root, url) = serve_page();
    let browser = start_browser();
    browser.open(&url).expect("opening the page");
    let dir = screenshot_dir().join("browser_harness");

    browser.set_phone_size().expect("a phone's window");
    let width = browser
        .eval("return window.innerWidth;")
        .expect("the width");
    let width = width.as_u64().expect("a number of pixels");
    assert!(
        (300..=420).contains(&width),
        "a phone's window is narrow: {width}"
    );
    let phone = dir.join("phone.png");
    browser.screenshot(&phone).expect("a screenshot");
    let (shot_width, shot_height) = read_png_size(&phone);
    assert!(
        (300..=420).contains(&shot_width),
        "as wide as the window: {shot_width}"
    );
    assert!(
        (3000..=5000).contains(&shot_height),
        "as tall as the page, beyond the window: {shot_height}"
    );

    browser.set_desktop_size().expect("a laptop's window");
    let width = browser
        .eval("return window.innerWidth;")
        .expect("the width");
    let width = width.as_u64().expect("a number of pixels");
    assert!(width >= 1000, "a laptop's window is wide: {width}");
    let desktop = dir.join("desktop.png");
    browser.screenshot(&desktop).expect("a screenshot");
    let (shot_width, shot_height) = read_png_size(&desktop);
    assert!(
        (1000..=1400).contains(&shot_width),
        "as wide as the window: {shot_width}"
    );
    assert!(
        (3000..=5000).contains(&shot_height),
        "as tall as the page: {shot_height}"
    );
    browser.close().expect("closing the browser");
}

#[test]
fn nothing_of_the_browser_is_left_after_a_drop() {
    let (_root, url) = serve_page();
    let browser = start_browser();
    browser.open(&url).expect("opening the page");
    let group = browser.driver_pid();
    let scratch = browser.scratch_dir().to_owned();
    assert!(group_has_running_process(group));
    // Chromium's processes name its profile; its crash handler (which
    // leaves the group) names only the browser's HOME.
    let chromium = processes_using(&scratch.join("profile"));
    assert!(
        !chromium.is_empty(),
        "Chromium runs with its profile in the browser's directory"
    );
    for pid in &chromium {
        let pid: u32 = pid.parse().expect("a pid");
        assert_eq!(
            process_group(pid),
            Some(group),
            "Chromium's process {pid} is in chromedriver's group, which the drop kills"
        );
    }

    let stopping = Instant::now();
    drop(browser);
    eprintln!("browser stopped in {} ms", stopping.elapsed().as_millis());
    assert_gone(group, &scratch);
}

#[test]
fn nothing_of_the_browser_is_left_after_a_panic() {
    let (_root, url) = serve_page();
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let browser = start_browser();
        browser.open(&url).expect("opening the page");
        sender
            .send((browser.driver_pid(), browser.scratch_dir().to_owned()))
            .expect("sending the browser's ids");
        panic!("a test failing while its browser is open");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (group, scratch) = receiver.recv().expect("the browser's ids");
    assert_gone(group, &scratch);
}

#[test]
fn a_browser_that_died_is_reported_with_its_log() {
    let (_root, url) = serve_page();
    let browser = start_browser();
    let group = browser.driver_pid();
    let group_id = rustix::process::Pid::from_raw(group as i32).expect("a pid");
    rustix::process::kill_process_group(group_id, rustix::process::Signal::KILL)
        .expect("killing the browser's group (started by this test)");
    let error = browser.open(&url).expect_err("no browser to open the page");
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("opening {url}"))
            && message.contains("chromedriver's and Chromium's log ends with:\n["),
        "the error names what failed and quotes chromedriver's log: {message}"
    );
    let scratch = browser.scratch_dir().to_owned();
    drop(browser);
    assert_gone(group, &scratch);
}

/// No process of the group runs, chromedriver's pid is gone, no process
/// (in the group or not) uses the browser's directory, which is removed.
fn assert_gone(group: u32, scratch: &Path) {
    assert!(
        !group_has_running_process(group),
        "process group {group} still runs"
    );
    assert!(
        !Path::new(&format!("/proc/{group}")).exists(),
        "chromedriver (pid {group}) is gone"
    );
    assert_eq!(
        processes_using(scratch),
        Vec::<String>::new(),
        "no process uses {}",
        scratch.display()
    );
    assert!(!scratch.exists(), "{} is removed", scratch.display());
}

fn read_png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("reading the screenshot");
    png_size(&bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
