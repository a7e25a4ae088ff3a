//! The stand-in's HTTP server, in the style of the lab's cache server
//! (`crate::http`): a thread per connection, one request per connection
//! (`Connection: close`), bounded heads and bodies, read timeouts. It
//! serves git over HTTP (`/{owner}/{name}.git/...`, through
//! [`super::cgi`]) and the forge's commit status API ([`super::statuses`]);
//! anything else is 404. A listener speaks plain HTTP or TLS ([`Speaks`]);
//! where the stand-in has TLS, its plain listener serves git only, so the
//! API is HTTPS only, as on every real forge.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::Shared;
use crate::tls::Connection;

/// What one listener speaks.
#[derive(Clone)]
pub(super) enum Speaks {
    /// Plain HTTP: git, and the API unless `api` is false.
    Http {
        /// Whether the status API is served here too.
        api: bool,
    },
    /// HTTPS: git and the API.
    Https(Arc<rustls::ServerConfig>),
}

/// Longest request head read.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
/// Largest request body (a git push of the lab's flakes is far smaller).
pub(super) const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Largest request body for the API.
pub(super) const MAX_API_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may pause while sending its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP request, read whole.
#[derive(Debug)]
pub(super) struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP response.
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Accepts connections until the stand-in stops.
pub(super) fn serve(listener: TcpListener, shared: Arc<Shared>, speaks: Speaks) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let connection_shared = Arc::clone(&shared);
        let speaks = speaks.clone();
        let worker = thread::spawn(move || {
            let _ = answer(&connection_shared, stream, &speaks);
        });
        shared.track(worker);
    }
}

fn answer(shared: &Arc<Shared>, stream: TcpStream, speaks: &Speaks) -> Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let (connection, api) = match speaks {
        Speaks::Http { api } => (Connection::Plain(stream), *api),
        // A client that refuses the certificate ends the handshake: the
        // read below fails, and nothing is routed or recorded.
        Speaks::Https(config) => (
            Connection::Tls(Box::new(crate::tls::accept(config, stream)?)),
            true,
        ),
    };
    let mut reader = BufReader::new(connection);
    let response = match read_request(&mut reader, peer) {
        Ok(request) => route(shared, &request, api),
        Err(error) => Response::text(400, &format!("{error:#}\n")),
    };
    let connection = reader.get_mut();
    write_response(connection, &response)?;
    connection.finish();
    Ok(())
}

fn route(shared: &Arc<Shared>, request: &Request, api: bool) -> Response {
    let repository = format!("/{}", shared.owner_repo);
    let git = request
        .path
        .strip_prefix(&repository)
        .filter(|rest| rest.starts_with(".git/") || rest.starts_with('/'));
    if let Some(rest) = git {
        if !shared.git_login_accepted(request.header("authorization")) {
            let mut refused = Response::text(401, "Unauthorized\n");
            refused.headers.push((
                "WWW-Authenticate".to_owned(),
                "Basic realm=\"deployd-lab forge\"".to_owned(),
            ));
            return refused;
        }
        let rest = rest.strip_prefix(".git").unwrap_or(rest);
        return super::cgi::answer(shared, request, rest);
    }
    let not_found = || Response::json(404, &serde_json::json!({"message": "Not Found"}));
    if !api {
        return not_found();
    }
    super::statuses::answer(shared, request).unwrap_or_else(not_found)
}

fn read_request(reader: &mut BufReader<Connection>, peer: SocketAddr) -> Result<Request> {
    let mut head = reader.by_ref().take(MAX_HEAD_BYTES);
    let mut request_line = String::new();
    head.read_line(&mut request_line)?;
    let mut words = request_line.split_whitespace();
    let (method, target) = match (words.next(), words.next()) {
        (Some(method), Some(target)) => (method.to_owned(), target.to_owned()),
        _ => bail!("bad request line {request_line:?}"),
    };
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if head.read_line(&mut line)? == 0 {
            bail!("the request head ended early or is too long");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').context("bad header line")?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (target, String::new()),
    };
    let mut request = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
        peer,
    };
    if request
        .header("Expect")
        .is_some_and(|expect| expect.eq_ignore_ascii_case("100-continue"))
    {
        let writer = reader.get_mut();
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let chunked = request
        .header("Transfer-Encoding")
        .is_some_and(|encoding| encoding.eq_ignore_ascii_case("chunked"));
    request.body = if chunked {
        read_chunked(reader, MAX_BODY_BYTES)?
    } else {
        let length: usize = match request.header("Content-Length") {
            Some(length) => length.parse().context("bad Content-Length")?,
            None => 0,
        };
        if length > MAX_BODY_BYTES {
            bail!("a body of {length} bytes is over the limit");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(request)
}

/// Reads a `Transfer-Encoding: chunked` body (as git sends a large push).
pub(super) fn read_chunked(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if body.len() + size > limit {
            bail!("a chunked body over {limit} bytes");
        }
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = [0u8; 2];
        reader.read_exact(&mut end)?;
        if &end != b"\r\n" {
            bail!("a chunk does not end with CRLF");
        }
    }
}

fn write_response(stream: &mut impl Write, response: &Response) -> Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()?;
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined_and_bounded() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
        let body = read_chunked(&mut &wire[..], 100).expect("chunked");
        assert_eq!(body, b"Wikipedia");
        assert!(read_chunked(&mut &wire[..], 5).is_err());
        assert!(read_chunked(&mut &b"zz\r\n"[..], 100).is_err());
    }
}
