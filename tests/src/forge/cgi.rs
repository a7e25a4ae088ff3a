//! Git over HTTP through git's own `git http-backend`, run as a CGI program
//! per request: the request's method, path, query, content type, length,
//! encoding and `Git-Protocol` header in its environment, the body on its
//! stdin, its `Status:` and headers parsed from its stdout. Receive-pack is
//! enabled, so `git push` works; a push into a checked-out branch of a work
//! tree updates the work tree (`receive.denyCurrentBranch=updateInstead`).
//!
//! A forge sends its push hooks after a push: so does the stand-in, for
//! every ref a receive-pack changed (refs compared before and after it), in
//! a background thread.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::repo::Repository;
use super::server::{Request, Response};
use super::{PushEvent, Shared};
use crate::run::describe;

/// How long one `git http-backend` may run.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest `git http-backend` output kept.
const MAX_OUTPUT_BYTES: usize = 512 * 1024 * 1024;

/// Answers a git request; `rest` is the path after `/{owner}/{name}.git`.
pub(super) fn answer(shared: &Arc<Shared>, request: &Request, rest: &str) -> Response {
    let pushing = request.method == "POST" && rest == "/git-receive-pack";
    // One push at a time, so each one's ref changes are its own.
    let _push = pushing.then(|| shared.push_lock.lock());
    let before = if pushing {
        shared.repository.refs().ok()
    } else {
        None
    };
    let response = match run_backend(shared, request, rest) {
        Ok(response) => response,
        Err(error) => Response::text(500, &format!("{error:#}\n")),
    };
    if let Some(before) = before {
        if let Ok(after) = shared.repository.refs() {
            let zero = shared
                .repository
                .zero_id()
                .unwrap_or_else(|_| "0".repeat(40));
            let mut updates = Vec::new();
            for name in before.keys().chain(after.keys()) {
                let (old, new) = (before.get(name), after.get(name));
                if old != new && !updates.iter().any(|u: &PushEvent| &u.reference == name) {
                    updates.push(PushEvent {
                        reference: name.clone(),
                        before: old.cloned().unwrap_or_else(|| zero.clone()),
                        after: new.cloned().unwrap_or_else(|| zero.clone()),
                    });
                }
            }
            shared.send_in_background(updates);
        }
    }
    response
}

fn run_backend(shared: &Shared, request: &Request, rest: &str) -> Result<Response> {
    let mut command = backend_command(shared, request, rest);
    let label = describe(&command);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {label}"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let body = request.body.clone();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let stdout = child
        .stdout
        .take()
        .map(|pipe| drain(pipe, MAX_OUTPUT_BYTES));
    let stderr = child.stderr.take().map(|pipe| drain(pipe, 64 * 1024));
    let deadline = Instant::now() + BACKEND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{label} timed out");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let output = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    let errors = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if output.is_empty() && !status.success() {
        anyhow::bail!(
            "{label} failed with {status}: {}",
            String::from_utf8_lossy(&errors)
        );
    }
    parse_cgi(&output)
}

/// The `git http-backend` command for `request`, its CGI environment set.
fn backend_command(shared: &Shared, request: &Request, rest: &str) -> Command {
    let mut command = Command::new("git");
    command.arg("http-backend").env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let config = [
        ("http.receivepack", "true"),
        ("safe.directory", "*"),
        ("receive.denyCurrentBranch", "updateInstead"),
    ];
    command.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (index, (key, value)) in config.iter().enumerate() {
        command.env(format!("GIT_CONFIG_KEY_{index}"), key);
        command.env(format!("GIT_CONFIG_VALUE_{index}"), value);
    }
    command
        .env("GIT_PROJECT_ROOT", shared.project_root.path())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", format!("/{}.git{rest}", shared.owner_repo))
        .env("QUERY_STRING", &request.query)
        .env("REMOTE_ADDR", request.peer.ip().to_string())
        .env("CONTENT_LENGTH", request.body.len().to_string());
    for (variable, header) in [
        ("CONTENT_TYPE", "Content-Type"),
        ("HTTP_CONTENT_ENCODING", "Content-Encoding"),
        ("HTTP_GIT_PROTOCOL", "Git-Protocol"),
    ] {
        if let Some(value) = request.header(header) {
            command.env(variable, value);
        }
    }
    command
}

/// Splits CGI output into a response: headers up to the blank line, the
/// status from `Status:` (200 when absent), the rest as the body.
fn parse_cgi(output: &[u8]) -> Result<Response> {
    let (head, body) = split_head(output).context("the CGI output has no header end")?;
    let head = String::from_utf8_lossy(head);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("Status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .with_context(|| format!("bad CGI status {value:?}"))?;
        } else {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(Response {
        status,
        headers,
        body: body.to_vec(),
    })
}

fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    for (separator, length) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = output
            .windows(length)
            .position(|window| window == separator)
        {
            return Some((&output[..at], &output[at + length..]));
        }
    }
    None
}

fn drain(pipe: impl Read + Send + 'static, limit: usize) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(limit as u64).read_to_end(&mut bytes);
        bytes
    })
}

/// Makes the project root in which `owner/name.git` is the repository.
pub(super) fn project_root(repository: &Repository, owner_repo: &str) -> Result<tempfile::TempDir> {
    let root = tempfile::Builder::new()
        .prefix("deployd-forge-")
        .tempdir()
        .context("creating the forge's project root")?;
    let link = root.path().join(format!("{owner_repo}.git"));
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let target = std::fs::canonicalize(repository.dir())?;
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_becomes_a_response() {
        let output = b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno";
        let response = parse_cgi(output).expect("parsed");
        assert_eq!(response.status, 403);
        assert_eq!(
            response.headers,
            vec![("Content-Type".to_owned(), "text/plain".to_owned())]
        );
        assert_eq!(response.body, b"no");
        let output = b"Content-Type: application/x-git-upload-pack-advertisement\n\n001e#";
        let response = parse_cgi(output).expect("parsed");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"001e#");
        assert!(parse_cgi(b"no end").is_err());
    }
}
