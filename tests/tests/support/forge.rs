//! A fleet deployed by a push to the forge: a lab whose hosts trust the
//! service's own deploy key (`ci-1`, `may = ["deploy", "read"]`), the lab's
//! forge stand-in serving the toy flake over HTTP and HTTPS, its status API
//! over HTTPS only (a certificate from the test's own CA, which the service
//! trusts through its `ca_file`, unless a test says not to), and the real
//! `push serve` following `main`, fetching from the stand-in and posting
//! statuses to it. As on NixOS, push serve evaluates and builds as a build
//! user of its own, who can read none of its secret files, through a Nix
//! daemon (`deployd_lab::push_serve`), and copies and signs by its own
//! `[build]`: push.toml only names the hosts. push serve listens on the
//! lab's bridge, where hosts that pull reach its channel.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use deployd_lab::forge::{ForgeKind, ForgeOptions, ForgeStandIn, PushEvent, RecordedStatus};
use deployd_lab::push_serve::{make_secret, own, BuildUserSetup, BUILD_ID};
use deployd_lab::tls::TestCa;
use deployd_lab::{Lab, Node};

use super::deployd::{key, trusted};

/// The webhook secret and API token the stand-in and the service share.
pub const SECRET: &str = "a webhook secret for the lab";
/// The forge API token.
pub const TOKEN: &str = "a forge token for the lab";

/// The lab, the forge stand-in and the service.
pub struct ForgeFleet {
    /// The hosts and the toy flake (the forge's repository).
    pub lab: Lab,
    /// The forge stand-in.
    pub forge: ForgeStandIn,
    /// `push serve`.
    pub service: Service,
    /// The CA that signed the forge's certificate.
    pub ca: TestCa,
    /// Its build user's Nix daemon (stopped after the service).
    build_user: BuildUserSetup,
    /// Extra environment for the service.
    environment: Vec<(String, String)>,
    files: tempfile::TempDir,
}

/// A running `push serve`, killed (and waited for) on drop.
pub struct Service {
    /// Its process.
    pub child: Option<Child>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its config.
    pub config: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How the service fetches the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// From the forge stand-in, over HTTP (`git http-backend`).
    Http,
    /// From the builder's real OpenSSH server, with a key from a file; the
    /// builder's host key is in the service's `~/.ssh/known_hosts` or not.
    Ssh {
        /// Whether the service knows the builder's host key.
        host_known: bool,
    },
    /// From the stand-in over `https://`, which wants a user and an access
    /// token, given from files.
    Https {
        /// Whether the service's git trusts the certificate (`SSL_CERT_FILE`).
        certificate_trusted: bool,
    },
}

/// How the fleet is set up.
#[derive(Debug, Clone, Copy)]
pub struct FleetSetup {
    /// How the service fetches.
    pub fetch: Fetch,
    /// Whether the service's config gives the forge's CA as `ca_file`
    /// (else the forge's API certificate does not verify).
    pub forge_ca_given: bool,
}

impl Default for FleetSetup {
    fn default() -> Self {
        FleetSetup {
            fetch: Fetch::Http,
            forge_ca_given: true,
        }
    }
}

/// The user and token git over HTTPS wants.
pub const GIT_LOGIN: (&str, &str) = ("deployd", "an access token for the lab");

/// A port free on `ip` now.
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl ForgeFleet {
    /// `hosts` hosts running deployd, the stand-in of `kind`, and the
    /// service following `main` with every host. push.toml is committed.
    pub fn up(hosts: usize, kind: ForgeKind) -> ForgeFleet {
        ForgeFleet::up_with(hosts, kind, Fetch::Http)
    }

    /// Like [`ForgeFleet::up`], fetching the repository as `fetch` says.
    pub fn up_with(hosts: usize, kind: ForgeKind, fetch: Fetch) -> ForgeFleet {
        ForgeFleet::set_up(
            hosts,
            kind,
            FleetSetup {
                fetch,
                ..FleetSetup::default()
            },
        )
    }

    /// Like [`ForgeFleet::up`], set up as `setup` says.
    pub fn set_up(hosts: usize, kind: ForgeKind, setup: FleetSetup) -> ForgeFleet {
        let fetch = setup.fetch;
        let mut lab = Lab::up(&super::lab_options(hosts)).expect("lab up");
        let ci = key("ci-1");
        for host in lab.hosts().to_vec() {
            lab.write_deployd_config(&host, &[trusted(&ci, Some(&["deploy", "read"]))], "")
                .expect("config");
            lab.start_deployd(&host).expect("deployd up");
        }
        write_hosts_inventory(&lab);
        // The service's files: its secrets readable by root alone; its
        // state directory (the clone) readable by the build user's group,
        // and the build user's home, its own.
        let files = tempfile::tempdir().expect("temp dir");
        own(files.path(), 0, BUILD_ID, 0o750).expect("service files");
        let key_file = files.path().join("ci-1.secret");
        std::fs::write(&key_file, ci.to_key_file_text().as_bytes()).expect("key file");
        std::fs::write(files.path().join("secret"), format!("{SECRET}\n")).expect("secret");
        std::fs::write(files.path().join("token"), TOKEN).expect("token");
        for secret in ["ci-1.secret", "secret", "token"] {
            make_secret(&files.path().join(secret)).expect("secret file");
        }
        let state = files.path().join("state");
        let build_user = BuildUserSetup::start(&state).expect("the build user's setup");
        // On the lab's bridge: the hosts that pull reach its channel there.
        let gateway = lab.state().slot.gateway();
        let address = SocketAddr::from((gateway, free_port(gateway)));
        let ca = TestCa::new("forge test CA").expect("a test CA");
        let loopback = "127.0.0.1".parse().expect("address");
        let forge = ForgeStandIn::start(ForgeOptions {
            kind,
            repository: lab.flake().dir().to_owned(),
            owner_repo: "ops/fleet".into(),
            webhook_url: format!("http://{address}/v1/hooks/{}", kind.name()),
            secret: SECRET.into(),
            token: TOKEN.into(),
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: Some(
                ca.issue("forge", &[loopback])
                    .expect("the forge's certificate"),
            ),
        })
        .expect("forge stand-in");
        let mut environment = Vec::new();
        let (repository, git_section) = match fetch {
            Fetch::Http => (forge.git_url(), String::new()),
            Fetch::Https {
                certificate_trusted,
            } => {
                forge.require_git_login(Some(GIT_LOGIN));
                if certificate_trusted {
                    let certificate = ca.certificate().display().to_string();
                    environment.push(("SSL_CERT_FILE".to_owned(), certificate));
                }
                std::fs::write(files.path().join("git-token"), format!("{}\n", GIT_LOGIN.1))
                    .expect("token file");
                make_secret(&files.path().join("git-token")).expect("token file");
                let url = format!("{}/ops/fleet.git", forge.https_url().expect("HTTPS"));
                (
                    url,
                    format!(
                        "[git]\nusername = \"{}\"\npassword_file = \"{}\"\n",
                        GIT_LOGIN.0,
                        files.path().join("git-token").display()
                    ),
                )
            }
            Fetch::Ssh { host_known } => {
                let access = lab.start_builder_ssh().expect("sshd on the builder");
                let ssh_dir = lab.dir().join("ssh");
                let known_hosts = files.path().join("home/.ssh/known_hosts");
                std::fs::create_dir_all(known_hosts.parent().expect("dir")).expect("home");
                let host_key = std::fs::read_to_string(ssh_dir.join("host.pub")).expect("host key");
                let builder = lab.builder().address;
                let known = if host_known {
                    format!("{builder} {host_key}")
                } else {
                    String::new()
                };
                std::fs::write(&known_hosts, known).expect("known_hosts");
                (
                    format!(
                        "ssh://{}{}",
                        access.destination,
                        lab.flake().dir().display()
                    ),
                    format!(
                        "[git]\nssh_key_file = \"{}\"\n",
                        ssh_dir.join("client").display()
                    ),
                )
            }
        };
        let ca_line = if setup.forge_ca_given {
            let ca_file = files.path().join("forge-ca.pem");
            std::fs::copy(ca.certificate(), &ca_file).expect("CA file");
            format!("ca_file = \"{}\"\n", ca_file.display())
        } else {
            String::new()
        };
        let config = files.path().join("forge.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{address}\"\npublic_url = \"http://{address}\"\nstate_dir = \"{state}\"\nrepository = \"{git}\"\nkey_file = \"{key}\"\n{ca_line}{git_section}\
                 [forge]\nkind = \"{kind}\"\napi_url = \"{api}\"\nrepository = \"ops/fleet\"\n\
                 secret_file = \"{dir}/secret\"\ntoken_file = \"{dir}/token\"\n\
                 {build}[[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n",
                state = state.display(),
                build = BuildUserSetup::build_section(
                    &format!("file://{}", lab.cache_dir().display()),
                    &lab.cache_secret_key_file()
                ),
                git = repository,
                key = key_file.display(),
                kind = kind.name(),
                api = forge.api_url(),
                dir = files.path().display(),
            ),
        )
        .expect("config");
        let service = Service {
            child: None,
            address,
            config,
            log: files.path().join("service.log"),
        };
        let (name, socket) = build_user.environment();
        environment.push((name.to_owned(), socket.display().to_string()));
        let mut fleet = ForgeFleet {
            lab,
            forge,
            service,
            ca,
            build_user,
            environment,
            files,
        };
        fleet.start_service();
        fleet
    }

    /// Starts `push serve` and waits until it answers.
    pub fn start_service(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.service.log)
            .expect("log");
        let state_home = self.files.path().join("xdg-state");
        let mut command = self
            .lab
            .push_command(&self.files.path().join("unused.secret"), &state_home)
            .expect("push binary");
        command
            .args(["serve", "--config"])
            .arg(&self.service.config)
            .env("HOME", self.files.path().join("home"))
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.service.child = Some(command.spawn().expect("push serve"));
        let url = format!("{}/healthz", self.url());
        let up = super::wait_until(Duration::from_secs(20), || {
            reqwest::blocking::get(&url).is_ok_and(|answer| answer.status().is_success())
        });
        assert!(up, "push serve did not start:\n{}", self.service_log());
    }

    /// Kills `push serve` with SIGKILL, as a power loss would.
    pub fn kill_service(&mut self) {
        if let Some(mut child) = self.service.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
    }

    /// Restarts `push serve` with `keys` (TOML lines: `canary = 1`...)
    /// added to its `[[follow]]` of `main`.
    pub fn follow_with(&mut self, keys: &str) {
        self.kill_service();
        let text = std::fs::read_to_string(&self.service.config).expect("config");
        let follow = "[[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\n";
        assert!(text.contains(follow), "{text}");
        let text = text.replace(follow, &format!("{follow}{keys}\n"));
        std::fs::write(&self.service.config, text).expect("config");
        self.start_service();
    }

    /// The file `name` the service was given (`ci-1.secret`, `token`, ...).
    pub fn service_file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// The service's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.service.address)
    }

    /// What the service printed.
    pub fn service_log(&self) -> String {
        std::fs::read_to_string(&self.service.log).unwrap_or_default()
    }

    /// The service's `GET /v1/status`.
    pub fn service_status(&self) -> serde_json::Value {
        reqwest::blocking::get(format!("{}/v1/status", self.url()))
            .and_then(|answer| answer.json())
            .expect("status")
    }

    /// Marks `host` in push.toml (not committed: the next commit takes it)
    /// as a host that pulls, its host key `host_key` (`NAME:base64`)
    /// pinned, and makes push serve's own channel the fleet's.
    pub fn mark_as_pulling(&self, host: &Node, host_key: &str) {
        let path = self.lab.flake().dir().join("push.toml");
        let text = std::fs::read_to_string(&path).expect("push.toml");
        let entry = format!("[hosts.{}]\n", host.name);
        assert!(text.contains(&entry), "{text}");
        let text = text
            .replace(
                "[defaults]\n",
                &format!("[defaults]\nchannel = \"{}/v1/channel\"\n", self.url()),
            )
            .replace(
                &entry,
                &format!("{entry}pull = true\nhost_key = \"{host_key}\"\n"),
            );
        std::fs::write(path, text).expect("push.toml");
    }

    /// Commits a change to every system and sends the forge's push hook
    /// for it (as the forge does after a `git push`); returns the new
    /// revision and the hook's answer status.
    pub fn push_change(&mut self) -> (String, u16) {
        let before = self.lab.flake().head().expect("head");
        let rev = self
            .lab
            .flake_mut()
            .commit_changed_system()
            .expect("commit");
        (rev.clone(), self.hook(&before, &rev))
    }

    /// Sends the push hook of `main` moving from `before` to `after`.
    pub fn hook(&self, before: &str, after: &str) -> u16 {
        let answer = self
            .forge
            .push_hook(&PushEvent {
                reference: "refs/heads/main".into(),
                before: before.into(),
                after: after.into(),
            })
            .expect("hook sent");
        answer.status
    }

    /// Waits until every host has a final status on `rev`; returns the
    /// statuses `rev` got, in order.
    pub fn wait_for_final_statuses(&self, rev: &str, timeout: Duration) -> Vec<RecordedStatus> {
        let hosts: Vec<String> = self.lab.hosts().iter().map(|h| h.name.clone()).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let statuses: Vec<RecordedStatus> = self
                .forge
                .statuses()
                .into_iter()
                .filter(|status| status.sha == rev && status.answer < 300)
                .collect();
            let all_final = hosts
                .iter()
                .all(|host| final_state(&statuses, host).is_some());
            if all_final {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "no final status on {rev} for every host within {timeout:?}: {statuses:#?}\n{}",
                self.service_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl ForgeFleet {
    /// Pushes a change whose fetch must fail: the rollout ends `error` with
    /// a message naming the fetch and `cause`, and nothing is deployed or
    /// reported on the forge.
    pub fn push_that_cannot_be_fetched(&mut self, cause: &str) {
        let (_, answer) = self.push_change();
        assert_eq!(answer, 202);
        let ended = super::wait_until(Duration::from_secs(60), || {
            !self.service_status()["recent"][0].is_null()
        });
        assert!(ended, "{}", self.service_log());
        let service = self.service_status();
        let rollout = &service["recent"][0];
        assert_eq!(rollout["outcome"], "error", "{service}");
        let message = rollout["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("fetching main") && message.contains(cause),
            "{message}"
        );
        assert!(self.forge.statuses().is_empty());
        for host in self.lab.hosts() {
            assert_eq!(super::deployd::status(&self.lab, host).current_deploy, None);
        }
    }
}

/// push.toml with the lab's hosts and nothing else: the service builds,
/// copies and signs by its own `[build]` (not committed: the next commit
/// takes it).
fn write_hosts_inventory(lab: &Lab) {
    let mut text = "[defaults]\nport = 9797\n".to_owned();
    for host in lab.hosts() {
        text.push_str(&format!(
            "\n[hosts.{}]\naddress = \"{}\"\n",
            host.name, host.address
        ));
    }
    std::fs::write(lab.flake().dir().join("push.toml"), text).expect("push.toml");
}

/// `host`'s last status in `statuses`, if it is final (any forge's words).
pub fn final_state(statuses: &[RecordedStatus], host: &str) -> Option<String> {
    let context = format!("deployd/{host}");
    let last = statuses
        .iter()
        .rev()
        .find(|status| status.context == context)?;
    matches!(
        last.state.as_str(),
        "success" | "failure" | "error" | "failed" | "canceled"
    )
    .then(|| last.state.clone())
}

/// The states `host` got, in order.
pub fn states_of(statuses: &[RecordedStatus], host: &str) -> Vec<String> {
    let context = format!("deployd/{host}");
    statuses
        .iter()
        .filter(|status| status.context == context)
        .map(|status| status.state.clone())
        .collect()
}
