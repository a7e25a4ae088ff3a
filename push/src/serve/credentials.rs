//! Git credentials for the service's fetch, from the files `[git]` names,
//! and only ever for the configured repository: the callback compares the
//! scheme, host and port libgit2 asks for with the configured URL's and
//! refuses any other. libgit2 follows a redirect to the same host's other
//! port even when told to follow none to other hosts, and then asks for
//! credentials for that URL: this is where it gets none. (A password over
//! plain `http://` is refused by the config's check.)

use git2::{Cred, CredentialType, RemoteCallbacks};

use super::config::GitCredentials;

/// Where credentials may go: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The origin of `url`; `None` when it has no host (`file://`) or cannot be
/// read.
fn origin(url: &str) -> Option<Origin> {
    let url = reqwest::Url::parse(url).ok()?;
    let port = match url.scheme() {
        "ssh" => url.port().unwrap_or(22),
        _ => url.port_or_known_default()?,
    };
    Some(Origin {
        scheme: url.scheme().to_owned(),
        host: url.host_str()?.to_ascii_lowercase(),
        port,
    })
}

/// The callbacks of a fetch from `repository`: credentials from files,
/// each kind tried once, and only for `repository`'s origin.
pub fn callbacks<'a>(credentials: &'a GitCredentials, repository: &str) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    // A file:// repository asks for none; if it did, it would get none.
    let configured = origin(repository);
    let mut tried = CredentialType::empty();
    callbacks.credentials(move |url, username_from_url, allowed| {
        let asking = origin(url);
        if asking.is_none() || asking != configured {
            let asking = asking.map_or_else(|| "a URL without a host".to_owned(), |o| o.to_string());
            return Err(git2::Error::from_str(&format!(
                "{asking} asks for the git credentials, which go only to the configured repository's scheme, host and port: refused"
            )));
        }
        let username = credentials
            .username
            .as_deref()
            .or(username_from_url)
            .unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) && !tried.contains(CredentialType::USERNAME) {
            tried |= CredentialType::USERNAME;
            return Cred::username(username);
        }
        if let (true, false, Some(key)) = (
            allowed.contains(CredentialType::SSH_KEY),
            tried.contains(CredentialType::SSH_KEY),
            &credentials.ssh_key_file,
        ) {
            tried |= CredentialType::SSH_KEY;
            return Cred::ssh_key(username, None, key, None);
        }
        if let (true, false, Some(file)) = (
            allowed.contains(CredentialType::USER_PASS_PLAINTEXT),
            tried.contains(CredentialType::USER_PASS_PLAINTEXT),
            &credentials.password_file,
        ) {
            tried |= CredentialType::USER_PASS_PLAINTEXT;
            let password = std::fs::read_to_string(file).map_err(|error| {
                git2::Error::from_str(&format!("cannot read {}: {error}", file.display()))
            })?;
            return Cred::userpass_plaintext(username, password.trim_end_matches(['\n', '\r']));
        }
        Err(git2::Error::from_str(
            "the repository asks for credentials this service was not given ([git] in its config)",
        ))
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::super::repository::Clone;
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let configured = origin("https://git.example.org/ops/fleet.git");
        for same in [
            "https://git.example.org:443/ops/fleet.git",
            "https://GIT.example.org/other.git",
        ] {
            assert_eq!(origin(same), configured, "{same}");
        }
        for other in [
            "http://git.example.org/ops/fleet.git",
            "https://git.example.org:8443/ops/fleet.git",
            "https://evil.example.org/ops/fleet.git",
            "ssh://git.example.org/ops/fleet.git",
        ] {
            assert_ne!(origin(other), configured, "{other}");
        }
        assert_eq!(
            origin("ssh://git@git.example.org/ops/fleet.git"),
            origin("ssh://git.example.org:22/x")
        );
        assert_eq!(origin("file:///srv/fleet.git"), None);
    }

    /// A tiny HTTP server for one test: each connection gets one answer from
    /// `answer(request head)`, and every request head is kept.
    fn http_server(
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let reply = answer(&head);
                kept.lock().expect("lock").push(head);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (port, seen)
    }

    fn redirect_to(location: String) -> impl Fn(&str) -> String {
        move |head: &str| {
            let path = head.split(' ').nth(1).unwrap_or("/");
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
    }

    fn ask_for_a_password(_head: &str) -> String {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    }

    /// A repository server that redirects to another port, or to another
    /// host name, never gets the credentials there: they go only to the
    /// configured scheme, host and port.
    #[test]
    fn credentials_never_follow_a_redirect_to_another_host_or_port() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("token"), "s3cret-token\n").expect("token");
        let credentials = GitCredentials {
            username: Some("deployd".into()),
            password_file: Some(dir.path().join("token")),
            ssh_key_file: None,
        };
        let clone = Clone::open(&dir.path().join("repository")).expect("open");
        for host in ["127.0.0.1", "localhost"] {
            let (elsewhere, seen_elsewhere) = http_server(ask_for_a_password);
            let (configured, _) = http_server(redirect_to(format!("http://{host}:{elsewhere}")));
            let url = format!("http://127.0.0.1:{configured}/ops/fleet.git");
            let error = clone
                .fetch_branch(&url, "main", &credentials)
                .expect_err("nothing to fetch");
            let seen = seen_elsewhere.lock().expect("lock").clone();
            assert!(
                seen.iter()
                    .all(|head| !head.to_ascii_lowercase().contains("authorization")),
                "{host}:{elsewhere} got the credentials: {seen:?}"
            );
            let error = format!("{error:#}");
            assert!(
                error.contains("refused") || error.contains("cannot redirect"),
                "{error}"
            );
        }
        // The configured server takes the credentials, then redirects.
        let (elsewhere, seen_elsewhere) = http_server(ask_for_a_password);
        let redirect = redirect_to(format!("http://127.0.0.1:{elsewhere}"));
        let (configured, _) = http_server(move |head: &str| {
            if head.to_ascii_lowercase().contains("authorization") {
                redirect(head)
            } else {
                ask_for_a_password(head)
            }
        });
        let url = format!("http://127.0.0.1:{configured}/ops/fleet.git");
        let error = clone
            .fetch_branch(&url, "main", &credentials)
            .expect_err("nothing to fetch");
        let seen = seen_elsewhere.lock().expect("lock").clone();
        assert!(
            seen.iter()
                .all(|head| !head.to_ascii_lowercase().contains("authorization")),
            "127.0.0.1:{elsewhere} got the credentials after a redirect: {seen:?}"
        );
        assert!(format!("{error:#}").contains("refused"), "{error:#}");
    }
}
