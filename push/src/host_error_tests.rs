//! Each way a host fails to answer, through the real client against real
//! sockets: a closed port, a name that cannot resolve (`.invalid`, which
//! never does), a listener that accepts and never answers, an answer that
//! is not deployd's. (Certificates that do not verify: `tests/tls_hosts.rs`,
//! against a host serving the test certificate.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::*;
use crate::client::Client;
use crate::inventory::Target;

fn target(url: String) -> Target {
    Target {
        name: "sambirano".parse().expect("host name"),
        url,
        trust: crate::tls::Trust::default(),
    }
}

/// The cause and the one line of a status request to `url` that failed.
async fn unreachable(client: &Client, url: String) -> (Cause, String) {
    match client.status(&target(url)).await {
        Err(HostError::Unreachable(why)) => (why.cause.clone(), why.to_string()),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (cause, line) = unreachable(&Client::new(None), format!("http://127.0.0.1:{port}")).await;
    assert_eq!(cause, Cause::Refused);
    assert_eq!(
        line,
        format!("http://127.0.0.1:{port}/v1/status: connection refused")
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_named_so() {
    let url = "http://sambirano.invalid:9797".to_owned();
    let (cause, line) = unreachable(&Client::new(None), url).await;
    assert_eq!(cause, Cause::NotResolved, "{line}");
    assert_eq!(
        line,
        "http://sambirano.invalid:9797/v1/status: name not resolved"
    );
}

#[tokio::test]
async fn a_host_that_never_answers_times_out_after_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    // Accepts, reads, never answers (the connections are held until the
    // test ends).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let client = Client::new(None).with_request_timeout(Duration::from_millis(500));
    let (cause, line) = unreachable(&client, format!("http://127.0.0.1:{port}")).await;
    assert_eq!(cause, Cause::TimedOut(Duration::from_millis(500)));
    assert_eq!(
        line,
        format!("http://127.0.0.1:{port}/v1/status: timed out (after 0.5 s)")
    );
}

/// A listener that answers every request with `status` and `body`.
fn answering(status: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn an_unexpected_answer_names_the_request_and_its_status() {
    let port = answering("404 Not Found", "<html>not here</html>");
    let error = Client::new(None)
        .status(&target(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("a 404");
    assert!(matches!(error, HostError::Unexpected(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("unexpected answer to GET http://127.0.0.1:{port}/v1/status: HTTP 404 Not Found")
    );

    // A JSON error of a code this push does not know: its words are kept.
    let port = answering(
        "409 Conflict",
        r#"{"error":"frozen","message":"it failed there an hour ago"}"#,
    );
    let error = Client::new(None)
        .status(&target(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("a 409");
    assert_eq!(
        error.to_string(),
        format!(
            "unexpected answer to GET http://127.0.0.1:{port}/v1/status: HTTP 409 Conflict, frozen: it failed there an hour ago"
        )
    );

    // deployd's own error is its code and message, as before.
    let port = answering(
        "403 Forbidden",
        r#"{"error":"wrong_host","message":"this is isalo"}"#,
    );
    let error = Client::new(None)
        .status(&target(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("a 403");
    assert!(matches!(error, HostError::Refused(_)), "{error:?}");
    assert_eq!(error.to_string(), "wrong_host: this is isalo");

    // A success that is not deployd's JSON: which request, and why.
    let port = answering("200 OK", "{}");
    let error = Client::new(None)
        .status(&target(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("not a status");
    let line = error.to_string();
    assert!(
        line.starts_with(&format!(
            "unexpected answer to GET http://127.0.0.1:{port}/v1/status: not deployd's JSON ("
        )),
        "{line}"
    );
}

#[tokio::test]
async fn no_prefix_is_doubled_on_the_way_to_push_s_line() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let error = Client::new(None)
        .status(&target(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("refused");
    let error = anyhow::Error::new(error).context("asking sambirano for its deploys");
    assert_eq!(
        crate::exit::describe(&error),
        format!("asking sambirano for its deploys: http://127.0.0.1:{port}/v1/status: connection refused")
    );
    assert_eq!(crate::exit::status_of(&error), crate::exit::HOST_FAILED);
}
