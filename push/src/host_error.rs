//! Why a host did not do what push asked, each cause in its own words and
//! on one line: a host that cannot be reached says why (connection
//! refused, name not resolved, timed out after how long, which TLS check
//! failed), naming the URL once; an answer that is not deployd's API names
//! the request (method and URL) and the HTTP status, with the code and
//! message of a JSON error body this push does not know. The cause is read
//! from the error's types (reqwest's kinds, `std::io::ErrorKind`, hyper's
//! and rustls' errors), not from its text, wherever the types tell it.

use std::error::Error as StdError;
use std::time::Duration;

use deployd_protocol::ErrorBody;

use crate::tls::{causes, TlsError};

/// Why a host did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// It could not be reached.
    #[error(transparent)]
    Unreachable(Box<Unreachable>),
    /// It answered with deployd's error.
    #[error("{}: {}", .0.error, .0.message)]
    Refused(ErrorBody),
    /// It answered, but not as deployd answers that request.
    #[error(transparent)]
    Unexpected(Box<Unexpected>),
    /// An event stream that is not deployd's (too large an event, a final
    /// record that does not parse).
    #[error("unexpected event stream: {0}")]
    Protocol(String),
    /// No HTTPS client could be made for it (the cause, in one line).
    #[error("{}", crate::tls::chain(.0))]
    Setup(TlsError),
}

impl HostError {
    /// The host could not be reached: why, read from `error`.
    pub fn unreachable(error: reqwest::Error, timeouts: &Timeouts) -> HostError {
        HostError::Unreachable(Box::new(Unreachable::from_request(error, timeouts)))
    }
}

/// How long each part of a request may take, to say which one ran out.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// A whole request and its answer (`None`: event streams, unbounded).
    pub request: Option<Duration>,
}

/// A host that could not be reached, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{cause}", .url.as_ref().map(|url| format!("{url}: ")).unwrap_or_default())]
pub struct Unreachable {
    /// The URL asked, when there was one.
    pub url: Option<String>,
    /// Why, in words.
    pub cause: Cause,
    /// The error it was read from.
    #[source]
    pub error: Option<reqwest::Error>,
}

impl Unreachable {
    /// Reads why a request got no answer from `error`'s kind and causes.
    pub fn from_request(error: reqwest::Error, timeouts: &Timeouts) -> Unreachable {
        Unreachable {
            url: error.url().map(ToString::to_string),
            cause: Cause::of(&error, timeouts),
            error: Some(error),
        }
    }
}

/// Why a host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// Nothing listens there (TCP RST).
    #[error("connection refused")]
    Refused,
    /// The host name does not resolve.
    #[error("name not resolved")]
    NotResolved,
    /// No answer within the timeout that applied.
    #[error("timed out (after {} s)", .0.as_secs_f64())]
    TimedOut(Duration),
    /// No route to the host or its network.
    #[error("no route to host")]
    NoRoute,
    /// The connection was closed or reset before a whole answer.
    #[error("connection closed before a whole answer")]
    Closed,
    /// An event stream stayed silent this long.
    #[error("no data for {} s", .0.as_secs())]
    Silent(Duration),
    /// TLS: the certificate or the handshake (the words of [`crate::tls`]).
    #[error("{0}")]
    Tls(String),
    /// Anything else: the innermost cause's own words.
    #[error("{0}")]
    Other(String),
}

impl Cause {
    /// The cause of `error`, from its kinds and its chain of sources.
    fn of(error: &reqwest::Error, timeouts: &Timeouts) -> Cause {
        if let Some(tls) = crate::tls::tls_problem(error) {
            return Cause::Tls(tls);
        }
        if error.is_timeout() {
            // A connect timeout is a connect error too; else it was the
            // whole request's.
            let limit = match timeouts.request {
                Some(request) if !error.is_connect() => request,
                _ => timeouts.connect,
            };
            return Cause::TimedOut(limit);
        }
        for cause in causes(error) {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if let Some(known) = Cause::of_io(io.kind()) {
                    return known;
                }
            }
            if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
                if hyper.is_incomplete_message() || hyper.is_canceled() {
                    return Cause::Closed;
                }
            }
            if is_name_resolution(cause) {
                return Cause::NotResolved;
            }
        }
        let innermost = causes(error)
            .last()
            .map_or_else(|| error.to_string(), ToString::to_string);
        Cause::Other(innermost)
    }

    fn of_io(kind: std::io::ErrorKind) -> Option<Cause> {
        use std::io::ErrorKind;
        match kind {
            ErrorKind::ConnectionRefused => Some(Cause::Refused),
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Some(Cause::NoRoute),
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Some(Cause::Closed),
            _ => None,
        }
    }
}

/// Whether `cause` is the resolver's failure. hyper-util's connector wraps
/// it in an error type of its own that it does not export, and the system
/// resolver's `io::Error` has no kind of its own (`Uncategorized`): the
/// connector's fixed message is the only mark left.
fn is_name_resolution(cause: &(dyn StdError + 'static)) -> bool {
    cause.to_string() == "dns error"
}

/// An answer that is not what deployd answers.
#[derive(Debug, thiserror::Error)]
#[error("unexpected answer to {method} {url}: {problem}")]
pub struct Unexpected {
    /// The request's method.
    pub method: String,
    /// The request's URL.
    pub url: String,
    /// What was wrong: the HTTP status, a body that does not parse.
    pub problem: String,
    /// The error it was read from, if any.
    #[source]
    pub error: Option<reqwest::Error>,
}

/// The JSON error body of a code this push does not know (a newer deployd).
#[derive(serde::Deserialize)]
struct UnknownErrorBody {
    error: String,
    message: String,
}

/// The error for an answer of `status` whose body is `body`, to `method
/// url`: deployd's own error when the body is one, else an unexpected
/// answer naming the request and its status.
pub fn error_answer(
    method: &reqwest::Method,
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    body: &[u8],
) -> HostError {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(body) {
        return HostError::Refused(body);
    }
    let problem = match serde_json::from_slice::<UnknownErrorBody>(body) {
        Ok(body) => format!("HTTP {status}, {}: {}", body.error, body.message),
        Err(_) => format!("HTTP {status}"),
    };
    HostError::Unexpected(Box::new(Unexpected {
        method: method.to_string(),
        url: url.to_string(),
        problem,
        error: None,
    }))
}

/// A success to `method url` whose body is not the JSON expected.
pub fn unreadable_answer(
    method: &reqwest::Method,
    url: String,
    error: reqwest::Error,
) -> HostError {
    let inner = causes(&error)
        .last()
        .map_or_else(|| error.to_string(), ToString::to_string);
    HostError::Unexpected(Box::new(Unexpected {
        method: method.to_string(),
        url,
        problem: format!("not deployd's JSON ({inner})"),
        error: Some(error),
    }))
}

#[cfg(test)]
#[path = "host_error_tests.rs"]
mod tests;
