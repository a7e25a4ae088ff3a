//! The demo's last act: a push to the forge deploys. The lab's forge
//! stand-in (Forgejo's hooks and status API) holds the fleet's repository;
//! `push serve` follows its `main` with its own deploy key, which the hosts
//! trust to deploy and read. A `git push` to the stand-in over HTTP becomes
//! a signed webhook; the service fetches, builds (as its build user, who
//! cannot read its secrets: `push_serve`) and deploys the tip, and the
//! statuses the forge received are printed as they arrive. The forge's
//! API is HTTPS only, as a real forge's is, with a certificate from a CA
//! of the lab's own, which the service trusts through its `ca_file`. Every
//! status links to push serve's page of the rollout (`public_url`), which
//! the demo opens in a headless Chromium, as the forge's "Details" link
//! would, and reads back.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deployd_lab::browser::Browser;
use deployd_lab::forge::{ForgeKind, ForgeOptions, ForgeStandIn, RecordedStatus};
use deployd_lab::push_serve::{make_secret, BuildUserSetup};
use deployd_lab::tls::TestCa;
use deployd_lab::Lab;
use deployd_protocol::SecretKey;

use super::expect::Expected;

/// The webhook secret the stand-in signs with and the service checks.
const SECRET: &str = "the lab's webhook secret";
/// The token the service posts statuses with.
const TOKEN: &str = "the lab's forge token";
/// How long the fleet may take to deploy the push.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);

/// `push serve`, stopped on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pushes a new revision to the forge stand-in and shows the fleet deploy it.
pub fn show(lab: &mut Lab, ci_key: &SecretKey, operator: (&Path, &Path)) -> Result<()> {
    let (ops_key_file, operator_state) = operator;
    let dir = lab.dir().join("forge");
    std::fs::create_dir_all(&dir)?;
    let bare = dir.join("ops/fleet.git");
    git(
        lab.flake().dir(),
        &["clone", "-q", "--bare", ".", &bare.to_string_lossy()],
    )?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let kind = ForgeKind::Forgejo;
    let ca = TestCa::new("deployd lab CA")?;
    let forge = ForgeStandIn::start(ForgeOptions {
        kind,
        repository: bare,
        owner_repo: "ops/fleet".into(),
        webhook_url: format!("http://{address}/v1/hooks/{}", kind.name()),
        secret: SECRET.into(),
        token: TOKEN.into(),
        listen: "127.0.0.1:0".parse()?,
        tls: Some(ca.issue("forge", &[address.ip()])?),
    })?;
    let ca_file = dir.join("lab-ca.pem");
    std::fs::copy(ca.certificate(), &ca_file)?;
    let key_file = dir.join("ci-1.secret");
    std::fs::write(&key_file, ci_key.to_key_file_text().as_bytes())?;
    std::fs::write(dir.join("webhook-secret"), SECRET)?;
    std::fs::write(dir.join("forge-token"), TOKEN)?;
    for secret in ["ci-1.secret", "webhook-secret", "forge-token"] {
        make_secret(&dir.join(secret))?;
    }
    // Its state (the clone) where its build user may read it: outside the
    // lab's directory, which only root enters.
    let state = tempfile::Builder::new()
        .prefix("deployd-lab-forge-")
        .tempdir()?;
    let build_user = BuildUserSetup::start(state.path())?;
    let config = dir.join("forge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{address}\"\npublic_url = \"http://{address}\"\nstate_dir = \"{state}\"\nrepository = \"{git}\"\nkey_file = \"{key}\"\nca_file = \"{ca}\"\n\n\
             [forge]\nkind = \"{kind}\"\napi_url = \"{api}\"\nrepository = \"ops/fleet\"\n\
             secret_file = \"{dir}/webhook-secret\"\ntoken_file = \"{dir}/forge-token\"\n\n\
             {build}\n\
             [[follow]]\nbranch = \"main\"\nhosts = [\"*\"]\naction = \"switch\"\n",
            state = state.path().display(),
            build = BuildUserSetup::build_section(
                &format!("file://{}", lab.cache_dir().display()),
                &lab.cache_secret_key_file()
            ),
            git = forge.git_url(),
            key = key_file.display(),
            ca = ca_file.display(),
            kind = kind.name(),
            api = forge.api_url(),
            dir = dir.display(),
        ),
    )?;
    println!(
        "\n== push serve: follows main of {} (a Forgejo stand-in, its API over HTTPS at {}), deploys every host with its own key (ci-1: deploy, read)",
        forge.git_url(),
        forge.api_url()
    );
    print!("{}", std::fs::read_to_string(&config)?);
    let log = dir.join("push-serve.log");
    let _service = start_service(lab, &dir, address, &build_user)?;

    let rev = lab.flake_mut().commit_changed_system()?;
    lab.save()?;
    println!("\n== git push {} main  ({})", forge.git_url(), &rev[..12]);
    let pushed = Instant::now();
    git(lab.flake().dir(), &["push", "-q", &forge.git_url(), "main"])?;
    let hosts: Vec<String> = lab.hosts().iter().map(|host| host.name.clone()).collect();
    let statuses = follow_statuses(&forge, &rev, &hosts, pushed).with_context(|| {
        format!(
            "push serve's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })?;
    let failed: Vec<String> = hosts
        .iter()
        .filter(|host| last_state(&statuses, host).as_deref() != Some("success"))
        .cloned()
        .collect();
    if !failed.is_empty() {
        bail!("the forge shows no success for {}", failed.join(", "));
    }
    Expected::every_host_succeeds(&hosts, &rev)
        .check_hosts(lab, ops_key_file, operator_state)
        .context("the forge says success, but the hosts do not agree")?;
    show_the_rollout_page(&statuses, &hosts, address)?;
    println!(
        "== as planned: the forge shows success for every host, and every host runs {}",
        &rev[..12]
    );
    Ok(())
}

/// Opens the rollout's page that every status links to, in a headless
/// Chromium, and shows what it says of each host: it must say succeeded.
fn show_the_rollout_page(
    statuses: &[RecordedStatus],
    hosts: &[String],
    address: SocketAddr,
) -> Result<()> {
    let pages = format!("http://{address}/rollouts/");
    if let Some(unlinked) = statuses.iter().find(|status| {
        !status
            .target_url
            .as_deref()
            .is_some_and(|url| url.starts_with(&pages))
    }) {
        bail!(
            "a status does not link to push serve's rollout page: {} {} {:?}",
            unlinked.context,
            unlinked.state,
            unlinked.target_url
        );
    }
    let link = statuses[0].target_url.as_deref().unwrap_or_default();
    let page = link.split('#').next().unwrap_or(link);
    println!("\n== the commit's \"Details\" link, in a headless Chromium: {page}");
    let browser = Browser::start()?;
    browser.open(page)?;
    println!("  {}", browser.text_of("h1")?);
    for host in hosts {
        let part = browser.text_of(&format!("#host-{host}"))?;
        let first_line = part.lines().next().unwrap_or_default().to_owned();
        println!("  {first_line}");
        if !first_line.contains("succeeded") {
            bail!("the rollout's page does not say {host} succeeded:\n{part}");
        }
    }
    browser.close()
}

/// Starts push serve with the config `dir/forge.toml`, its log in
/// `dir/push-serve.log`.
fn start_service(
    lab: &Lab,
    dir: &Path,
    address: SocketAddr,
    build_user: &BuildUserSetup,
) -> Result<Service> {
    let (config, log) = (dir.join("forge.toml"), dir.join("push-serve.log"));
    let output = std::fs::File::create(&log)?;
    let mut command = lab.push_command(&config, &lab.dir().join("forge/xdg-state"))?;
    let (name, socket) = build_user.environment();
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env(name, socket)
        .env_remove("DEPLOYD_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output);
    let service = Service(command.spawn().context("starting push serve")?);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            bail!(
                "push serve did not start: {}",
                std::fs::read_to_string(&log)?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(service)
}

/// Prints each status the forge receives for `rev` until every host has a
/// final one; returns them all.
fn follow_statuses(
    forge: &ForgeStandIn,
    rev: &str,
    hosts: &[String],
    since: Instant,
) -> Result<Vec<RecordedStatus>> {
    let mut shown = 0;
    loop {
        let statuses: Vec<RecordedStatus> = forge
            .statuses()
            .into_iter()
            .filter(|status| status.sha == rev)
            .collect();
        for status in &statuses[shown..] {
            println!(
                "  forge <- {:5.1}s  {:<22} {:<8} {}",
                status.at.duration_since(since).as_secs_f64(),
                status.context,
                status.state,
                status.description.as_deref().unwrap_or("")
            );
        }
        shown = statuses.len();
        let finished = hosts.iter().all(|host| {
            last_state(&statuses, host)
                .is_some_and(|state| matches!(state.as_str(), "success" | "failure" | "error"))
        });
        if finished {
            return Ok(statuses);
        }
        if since.elapsed() > DEPLOY_TIMEOUT {
            bail!("not every host had a result on the commit within {DEPLOY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_state(statuses: &[RecordedStatus], host: &str) -> Option<String> {
    let context = format!("deployd/{host}");
    statuses
        .iter()
        .rev()
        .find(|status| status.context == context)
        .map(|status| status.state.clone())
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
