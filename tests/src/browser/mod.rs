//! A real headless Chromium (Debian's) for the lab's tests, driven over
//! WebDriver by Debian's chromedriver through `fantoccini`.
//!
//! [`Browser::start`] starts chromedriver on a free loopback port, in a
//! process group of its own, and opens one session: Chromium with the flags
//! of [`capabilities`], a new empty profile and HOME in a temporary
//! directory. Every call is bounded in time, and its error quotes the end
//! of chromedriver's log (where Chromium's output goes too, never into the
//! test's output). Dropping the browser, also on a panic, ends the session,
//! kills the process group by its id, waits until no process of it runs,
//! and removes the temporary directory.
//!
//! The API is blocking, as the lab's tests are: a browser owns a small
//! tokio runtime and must not be used from inside another one.

mod capabilities;
mod driver;
mod processes;
mod screenshot;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use tempfile::TempDir;
use tokio::runtime::Runtime;

pub use capabilities::{WindowSize, CHROMEDRIVER, CHROMIUM, DESKTOP, PHONE};
pub use processes::{group_has_running_process, process_group, running_processes_naming};
pub use screenshot::{is_png, png_size, screenshot_dir};

use driver::Driver;

/// How long one WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening the session (starting Chromium) may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long ending the session may take before the group is killed anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`Browser::wait_for_text`] looks again.
const TEXT_POLL: Duration = Duration::from_millis(50);

/// One headless Chromium with one WebDriver session.
pub struct Browser {
    // Fields drop in order: the session's client, then its runtime, then
    // chromedriver and its group, then the directory they used.
    client: Option<Client>,
    runtime: Runtime,
    driver: Driver,
    /// The profile, HOME and chromedriver's log.
    scratch: TempDir,
}

impl Browser {
    /// Starts chromedriver and Chromium with a desktop-sized window.
    pub fn start() -> Result<Browser> {
        let scratch = tempfile::Builder::new()
            .prefix("deployd-browser-")
            .tempdir()
            .context("creating the browser's temporary directory")?;
        let profile = scratch.path().join("profile");
        std::fs::create_dir(&profile).context("creating the browser's profile directory")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the browser's runtime")?;
        let driver = Driver::start(scratch.path())?;
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities::chromium_capabilities(&profile, DESKTOP));
        let url = driver.url();
        let session = runtime
            .block_on(async { tokio::time::timeout(SESSION_TIMEOUT, builder.connect(&url)).await });
        let client = match session {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(error)
                    .context(format!("opening a Chromium session\n{}", driver.log_tail()))
            }
            Err(_) => anyhow::bail!(
                "Chromium's session did not open within {SESSION_TIMEOUT:?}\n{}",
                driver.log_tail()
            ),
        };
        Ok(Browser {
            client: Some(client),
            runtime,
            driver,
            scratch,
        })
    }

    /// chromedriver's pid, which is also the id of the process group that
    /// Chromium's processes run in.
    pub fn driver_pid(&self) -> u32 {
        self.driver.pid()
    }

    /// The temporary directory the browser uses (its profile, its HOME and
    /// chromedriver's log); removed when the browser is dropped.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Loads `url` and waits until the page has loaded.
    pub fn open(&self, url: &str) -> Result<()> {
        self.command(&format!("opening {url}"), |client| async move {
            client.goto(url).await
        })
    }

    /// The URL the browser shows now.
    pub fn current_url(&self) -> Result<String> {
        let url = self.command("reading the current URL", |client| async move {
            client.current_url().await
        })?;
        Ok(url.to_string())
    }

    /// The rendered text of the first element matching the CSS selector.
    pub fn text_of(&self, css: &str) -> Result<String> {
        self.command(&format!("reading the text of {css}"), |client| async move {
            client.find(Locator::Css(css)).await?.text().await
        })
    }

    /// Waits until the text of the first element matching `css` contains
    /// `needle`, looking again every 50 ms, for at most `timeout`; returns
    /// that text. The error says what the page showed last.
    pub fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last_seen;
        loop {
            match self.text_of(css) {
                Ok(text) if text.contains(needle) => return Ok(text),
                Ok(text) => last_seen = format!("{text:?}"),
                Err(error) => last_seen = format!("no text ({error:#})"),
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{css} did not show {needle:?} within {timeout:?}; it showed {last_seen}"
                );
            }
            std::thread::sleep(TEXT_POLL);
        }
    }

    /// Resizes the window to a phone's ([`PHONE`]).
    pub fn set_phone_size(&self) -> Result<()> {
        self.set_window_size(PHONE)
    }

    /// Resizes the window to a laptop's ([`DESKTOP`]).
    pub fn set_desktop_size(&self) -> Result<()> {
        self.set_window_size(DESKTOP)
    }

    /// Resizes the window to `size`.
    pub fn set_window_size(&self, size: WindowSize) -> Result<()> {
        let what = format!("resizing the window to {}x{}", size.width, size.height);
        self.command(&what, |client| async move {
            client.set_window_size(size.width, size.height).await
        })
    }

    /// Runs `script` in the page as a function body and returns what it
    /// returns (`return document.title;`), as JSON.
    pub fn eval(&self, script: &str) -> Result<Value> {
        self.command("running a script in the page", |client| async move {
            client.execute(script, Vec::new()).await
        })
    }

    /// Writes a PNG of the whole page (beyond the window, as far as the
    /// page reaches) to `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.command("taking a screenshot", |client| async move {
            screenshot::full_page_png(&client).await
        })?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Ends the session, then stops chromedriver and Chromium (as dropping
    /// does), reporting a failure to end the session.
    pub fn close(mut self) -> Result<()> {
        self.end_session()
    }

    /// Runs one WebDriver exchange on the session, bounded by
    /// [`COMMAND_TIMEOUT`]; an error names `what` and quotes the log.
    fn command<T, F, Fut>(&self, what: &str, exchange: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, CmdError>>,
    {
        let client = self.client.clone().context("the session has ended")?;
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, exchange(client)).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            // The browser answered (no such element, a script's error): the
            // page's matter, which the log would only bury.
            Ok(Err(error @ CmdError::Standard(_))) => Err(error).context(what.to_owned()),
            Ok(Err(error)) => Err(error).context(format!("{what}\n{}", self.driver.log_tail())),
            Err(_) => Err(anyhow!(
                "{what}: no answer within {COMMAND_TIMEOUT:?}\n{}",
                self.driver.log_tail()
            )),
        }
    }

    fn end_session(&mut self) -> Result<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let closed = self
            .runtime
            .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await });
        match closed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error).context("ending the browser session"),
            Err(_) => anyhow::bail!("the browser session did not end within {CLOSE_TIMEOUT:?}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A session that does not end is no reason to keep Chromium: the
        // driver's drop kills the whole group next.
        let _ = self.end_session();
    }
}
