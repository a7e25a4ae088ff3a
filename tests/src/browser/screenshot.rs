//! Screenshots: the whole page as a PNG, through chromedriver's door to
//! Chromium's DevTools protocol (standard WebDriver only captures the
//! window), the PNG checks the tests make, and where screenshots are kept.

use std::path::PathBuf;

use anyhow::{bail, Result};
use base64::Engine;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::Client;
use serde_json::{json, Value};

/// The tallest page a screenshot covers, in CSS pixels: a runaway page
/// must not make a PNG of gigabytes.
const MAX_PAGE_HEIGHT: f64 = 16_384.0;
/// The environment variable that names where screenshots go.
pub const SCREENSHOTS_ENV: &str = "DEPLOYD_SCREENSHOTS";

/// Where tests put their screenshots: `$DEPLOYD_SCREENSHOTS` when set,
/// otherwise `screenshots/` in Cargo's target directory (the directory
/// with `CACHEDIR.TAG` above the test binary), else the system's
/// temporary directory.
pub fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(SCREENSHOTS_ENV).filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(|target| target.join("screenshots"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("deployd-screenshots"))
}

/// Whether `bytes` start with PNG's signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// A PNG's width and height in pixels, from its IHDR chunk.
pub fn png_size(bytes: &[u8]) -> Result<(u32, u32)> {
    if !is_png(bytes) || bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        bail!("not a PNG with its header where PNG puts it");
    }
    let number =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Ok((number(16), number(20)))
}

/// The whole page as a PNG: its size from `Page.getLayoutMetrics`, then
/// `Page.captureScreenshot` of that area beyond the window.
pub(super) async fn full_page_png(client: &Client) -> Result<Vec<u8>, CmdError> {
    let metrics = client
        .issue_cmd(DevTools::new("Page.getLayoutMetrics", json!({})))
        .await?;
    let size = &metrics["cssContentSize"];
    let (Some(width), Some(height)) = (size["width"].as_f64(), size["height"].as_f64()) else {
        return Err(CmdError::NotW3C(metrics));
    };
    let clip = json!({
        "x": 0, "y": 0, "width": width.ceil(), "height": height.ceil().min(MAX_PAGE_HEIGHT), "scale": 1,
    });
    let shot = client
        .issue_cmd(DevTools::new(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true, "clip": clip }),
        ))
        .await?;
    let Some(data) = shot["data"].as_str() else {
        return Err(CmdError::NotW3C(shot));
    };
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(CmdError::ImageDecodeError)
}

/// A DevTools protocol command sent through chromedriver
/// (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct DevTools {
    body: String,
}

impl DevTools {
    fn new(method: &str, params: Value) -> DevTools {
        DevTools {
            body: json!({ "cmd": method, "params": params }).to_string(),
        }
    }
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_png_header_and_refuses_other_bytes() {
        let mut header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        header.extend_from_slice(&1280u32.to_be_bytes());
        header.extend_from_slice(&2400u32.to_be_bytes());
        assert_eq!(png_size(&header).expect("a PNG"), (1280, 2400));
        assert!(png_size(b"GIF89a and more bytes than a header").is_err());
        assert!(png_size(b"\x89PNG\r\n\x1a\n").is_err());
    }
}
