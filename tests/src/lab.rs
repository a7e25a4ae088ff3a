//! A lab: a builder with a signed binary cache served over HTTP, and hosts,
//! each a network namespace with a Nix store of its own, plus the toy flake
//! they are built from. Made by [`Lab::up`], removed by [`Lab::down`] or on
//! drop, whatever happened in between.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::flake::ToyFlake;
use crate::http::Pace;
use crate::net;
use crate::node::{node_environment, Node};
use crate::registry::{orphaned_labs, LabState, ProcessId};
use crate::run::{run, stdout_text};

/// The hosts' names, in order; a larger lab numbers the rest.
const HOST_NAMES: [&str; 6] = [
    "sambirano",
    "ankarana",
    "isalo",
    "masoala",
    "marojejy",
    "andasibe",
];
/// Where the builder's cache listens.
pub const CACHE_PORT: u16 = 5000;
/// The most hosts a lab may have (their addresses, from `.10`, stay inside
/// the lab's /24; the benchmark's scale figure goes to 100).
pub const MAX_HOSTS: usize = 200;

/// How to make a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// How many hosts.
    pub hosts: usize,
    /// The lab's directory; a fresh temporary one when `None`.
    pub dir: Option<PathBuf>,
    /// The `lab` binary, which supervises the lab's services.
    pub lab_binary: PathBuf,
    /// Whether the lab lives only as long as this process (tests) or until
    /// `lab down` (the command line).
    pub owned_by_this_process: bool,
    /// Whether each host boots systemd as its PID 1, as a NixOS machine
    /// does (without: deployd runs under `lab supervise`, as on a machine
    /// where systemd is not PID 1).
    pub systemd: bool,
}

/// A running lab.
pub struct Lab {
    state: LabState,
    flake: ToyFlake,
    lab_binary: PathBuf,
    /// Supervisors started by this process: (node, program name, process).
    supervisors: Vec<(String, String, Child)>,
    /// Set once torn down, so drop does nothing more.
    down: bool,
}

/// The name of host number `index` (from 0).
pub fn host_name(index: usize) -> String {
    HOST_NAMES
        .get(index)
        .map_or_else(|| format!("host{}", index + 1), |name| (*name).to_owned())
}

impl Lab {
    /// Makes a lab: namespaces, bridge, node directories, cache key and
    /// server, and the toy flake's first commit.
    pub fn up(options: &LabOptions) -> Result<Lab> {
        if options.hosts == 0 || options.hosts > MAX_HOSTS {
            bail!("a lab has 1 to {MAX_HOSTS} hosts, not {}", options.hosts);
        }
        for orphan in orphaned_labs() {
            let _ = teardown(&orphan);
        }
        let dir = match &options.dir {
            Some(dir) => {
                if LabState::state_file(dir).exists() {
                    bail!("a lab is already up in {} (lab down first)", dir.display());
                }
                dir.clone()
            }
            None => tempfile::Builder::new()
                .prefix("deployd-lab-")
                .tempdir()?
                .keep(),
        };
        std::fs::create_dir_all(&dir)?;
        let slot = net::claim_slot((std::process::id() % 254) as u8)?;
        let hosts: Vec<String> = (0..options.hosts).map(host_name).collect();
        let node = |name: &str, last: u8, root: PathBuf| Node {
            name: name.to_owned(),
            address: slot.address(last),
            netns: slot.netns(name),
            root,
            pid1: None,
        };
        let state = LabState {
            slot,
            builder: node("builder", 2, dir.join("builder")),
            hosts: hosts
                .iter()
                .enumerate()
                .map(|(index, name)| node(name, 10 + index as u8, dir.join("hosts").join(name)))
                .collect(),
            owner: if options.owned_by_this_process {
                Some(ProcessId::current()?)
            } else {
                None
            },
            settings: crate::flake::FleetSettings::new(&hosts),
            dir,
        };
        // Registered before anything else exists, so a failure from here on
        // is cleaned up like any other lab.
        state.save()?;
        let (flake, _) = ToyFlake::create(&state.dir.join("flake"), &hosts)?;
        let mut lab = Lab {
            state,
            flake,
            lab_binary: options.lab_binary.clone(),
            supervisors: Vec::new(),
            down: false,
        };
        if let Err(error) = lab.build_up(options.systemd) {
            let _ = lab.down();
            return Err(error);
        }
        Ok(lab)
    }

    /// Opens the lab made by `lab up` in `dir`.
    pub fn open(dir: &Path, lab_binary: PathBuf) -> Result<Lab> {
        let state = LabState::load(dir)?;
        let flake = ToyFlake::open(&dir.join("flake"), state.settings.clone());
        Ok(Lab {
            state,
            flake,
            lab_binary,
            supervisors: Vec::new(),
            down: false,
        })
    }

    fn build_up(&mut self, systemd: bool) -> Result<()> {
        for node in self.state.nodes() {
            self.connect(node)?;
        }
        let keys = self.state.dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        let key_name = format!("lab-builder-{}", self.state.slot.0);
        run(Command::new("nix-store")
            .args(["--generate-binary-cache-key", &key_name])
            .arg(self.cache_secret_key_file())
            .arg(self.cache_public_key_file()))?;
        self.write_nix_configs()?;
        let cache = self.cache_dir();
        std::fs::create_dir_all(&cache)?;
        std::fs::write(
            cache.join("nix-cache-info"),
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
        )?;
        self.start_cache(Pace::default())?;
        if systemd {
            self.boot_systemd_hosts()?;
        }
        Ok(())
    }

    fn write_nix_configs(&self) -> Result<()> {
        // Builds run as root, not as `nixbld` users: Nix kills every process
        // of a build user before using it, and the stores of two labs (or
        // of the machine) would share those users and kill each other's builds.
        let builder = "sandbox = false\nbuild-users-group =\nsubstituters =\nrequire-sigs = true\nexperimental-features = nix-command flakes\n";
        std::fs::write(self.state.builder.outside("/etc/nix/nix.conf"), builder)?;
        let host = format!(
            "sandbox = false\nsubstituters = {}\ntrusted-public-keys = {}\nrequire-sigs = true\nnarinfo-cache-negative-ttl = 0\nconnect-timeout = 5\n",
            self.cache_url(),
            self.cache_public_key()?
        );
        for node in &self.state.hosts {
            std::fs::write(node.outside("/etc/nix/nix.conf"), &host)?;
        }
        Ok(())
    }

    /// Starts the builder's cache server (again, after [`Lab::stop_cache`]),
    /// at full speed or slowed down as `pace` says.
    pub fn start_cache(&mut self, pace: Pace) -> Result<()> {
        let listen = self.cache_address();
        let mut serve: Vec<OsString> = vec![
            self.lab_binary.clone().into_os_string(),
            "serve-cache".into(),
            "--root".into(),
            self.cache_dir().into_os_string(),
            "--listen".into(),
            listen.to_string().into(),
        ];
        if let Some(rate) = pace.bytes_per_second {
            serve.extend(["--bytes-per-second".into(), rate.to_string().into()]);
        }
        if !pace.latency_per_request.is_zero() {
            let milliseconds = pace.latency_per_request.as_millis();
            serve.extend(["--latency-ms".into(), milliseconds.to_string().into()]);
        }
        if pace.cut_first_nars > 0 {
            let count = pace.cut_first_nars.to_string();
            serve.extend(["--cut-first-nars".into(), count.into()]);
        }
        let builder = self.state.builder.clone();
        self.supervise(&builder, "cache-server", serve)?;
        wait_for_port(listen, Duration::from_secs(10))
    }

    /// Stops the builder's cache server: the cache is down until
    /// [`Lab::start_cache`].
    pub fn stop_cache(&mut self) -> Result<()> {
        let builder = self.state.builder.clone();
        self.stop_supervised(&builder, "cache-server")
    }

    /// Stops a supervised program for good: its supervisor first, so it is
    /// not restarted, then the program (both by pid).
    pub fn stop_supervised(&mut self, node: &Node, name: &str) -> Result<()> {
        let position = self
            .supervisors
            .iter()
            .position(|(netns, program, _)| netns == &node.netns && program == name)
            .with_context(|| format!("{name} is not supervised on {}", node.name))?;
        let (_, _, mut supervisor) = self.supervisors.remove(position);
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        if let Some(pid) = self.supervised_pid(node, name) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::fs::remove_file(node.root.join(format!("{name}.pid")))?;
        }
        Ok(())
    }

    /// Starts `argv` on `node` under `lab supervise`, which restarts it
    /// whenever it exits. Its output goes to `<node root>/<name>.log`, its pid
    /// to `<node root>/<name>.pid`.
    pub fn supervise(&mut self, node: &Node, name: &str, argv: Vec<OsString>) -> Result<()> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &node.netns])
            .arg(&self.lab_binary)
            .arg("supervise")
            .arg("--log")
            .arg(node.root.join(format!("{name}.log")))
            .arg("--pid-file")
            .arg(node.root.join(format!("{name}.pid")))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a terminal's ^C reaches `lab`, not the lab.
            .process_group(0);
        node_environment(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting the supervisor of {name} on {}", node.name))?;
        self.supervisors
            .push((node.netns.clone(), name.to_owned(), child));
        Ok(())
    }

    /// The pid of a supervised program, once it runs.
    pub fn supervised_pid(&self, node: &Node, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(node.root.join(format!("{name}.pid"))).ok()?;
        text.trim().parse().ok()
    }

    /// Builds every host's system at `rev` on the builder, signs the
    /// closures with the cache key and copies them into the cache. Returns
    /// each host's system path.
    pub fn build_and_publish(&self, rev: &str) -> Result<BTreeMap<String, String>> {
        let mut systems = BTreeMap::new();
        for host in &self.state.hosts {
            let installable = self.flake.installable(rev, &host.name);
            let output = self
                .state
                .builder
                .run(&["nix", "build", "--no-link", "--json", &installable])
                .with_context(|| format!("building {}'s system at {rev}", host.name))?;
            systems.insert(host.name.clone(), out_path(&output.stdout)?);
        }
        let paths: Vec<&str> = systems.values().map(String::as_str).collect();
        self.publish(&paths)?;
        Ok(systems)
    }

    /// Signs `paths` (with their closures) on the builder with the cache key
    /// and copies them into the cache.
    pub fn publish(&self, paths: &[&str]) -> Result<()> {
        self.publish_signed_by(paths, &self.cache_secret_key_file())
    }

    /// Signs `paths` with the secret key in `key_file` (which hosts may not
    /// trust) and copies them into the cache.
    pub fn publish_signed_by(&self, paths: &[&str], key_file: &Path) -> Result<()> {
        let key = key_file.to_str().context("key path is not UTF-8")?;
        let mut sign = vec!["nix", "store", "sign", "-k", key, "-r"];
        sign.extend_from_slice(paths);
        self.state.builder.run(&sign)?;
        let target = format!("file://{}", self.cache_dir().display());
        let mut copy = vec!["nix", "copy", "--to", &target];
        copy.extend_from_slice(paths);
        self.state.builder.run(&copy)?;
        Ok(())
    }

    /// Adds signatures by the current cache key to `paths` (and their
    /// closures) where they already are, in the cache itself, as an
    /// operator mends a cache with `nix store sign --store`.
    pub fn sign_in_cache(&self, paths: &[&str]) -> Result<()> {
        let key = self.cache_secret_key_file();
        let key = key.to_str().context("key path is not UTF-8")?;
        let store = format!("file://{}", self.cache_dir().display());
        let mut sign = vec!["nix", "store", "sign", "--store", &store, "-k", key, "-r"];
        sign.extend_from_slice(paths);
        self.state.builder.run(&sign)?;
        Ok(())
    }

    /// Replaces the cache key with a new one (named `name`): what is
    /// published from now on is signed with it, and [`Lab::cache_public_key`]
    /// and new host configs name it. What the cache holds keeps its old
    /// signatures.
    pub fn rotate_cache_key(&self, name: &str) -> Result<()> {
        std::fs::remove_file(self.cache_secret_key_file())?;
        std::fs::remove_file(self.cache_public_key_file())?;
        run(Command::new("nix-store")
            .args(["--generate-binary-cache-key", name])
            .arg(self.cache_secret_key_file())
            .arg(self.cache_public_key_file()))?;
        self.write_nix_configs()
    }

    /// Takes the lab down: every process in its namespaces, the namespaces,
    /// the bridge, the registry entry and the directory.
    pub fn down(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let result = teardown(&self.state);
        for (_, _, supervisor) in &mut self.supervisors {
            let _ = supervisor.kill();
            let _ = supervisor.wait();
        }
        result
    }

    /// Records that host `name` now runs systemd as PID 1 (`pid1` as this
    /// namespace sees it), so that commands on it enter its namespaces.
    pub(crate) fn set_pid1(&mut self, name: &str, pid1: u32) -> Result<Node> {
        self.change_host(name, |host| host.pid1 = Some(pid1))
    }

    /// Changes what the lab records of host `name`, and saves it.
    pub(crate) fn change_host(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Node),
    ) -> Result<Node> {
        let host = self
            .state
            .hosts
            .iter_mut()
            .find(|host| host.name == name)
            .with_context(|| format!("the lab has no host called {name}"))?;
        change(host);
        let host = host.clone();
        self.state.save()?;
        Ok(host)
    }

    /// Adds host `name` to the running lab, at the next address, its
    /// directories under `root`: registered before its namespace is made,
    /// so that the lab's teardown removes it whatever happens next.
    pub(crate) fn add_host_node(&mut self, name: &str, root: PathBuf) -> Result<Node> {
        if self.node(name).is_ok() {
            bail!("the lab already has a node called {name}");
        }
        if self.state.hosts.len() >= MAX_HOSTS {
            bail!("a lab has at most {MAX_HOSTS} hosts");
        }
        let last = 10 + self.state.hosts.len() as u8;
        let node = Node {
            name: name.to_owned(),
            address: self.state.slot.address(last),
            netns: self.state.slot.netns(name),
            root,
            pid1: None,
        };
        self.state.hosts.push(node.clone());
        self.state.save()?;
        self.connect(&node)?;
        Ok(node)
    }

    /// Makes `node`'s directories and its namespace on the lab's bridge.
    fn connect(&self, node: &Node) -> Result<()> {
        node.prepare_dirs()?;
        let last = node.address.octets()[3];
        net::add_node(self.state.slot, &node.name, last)
            .with_context(|| format!("creating node {}", node.name))
    }

    /// Records the flake's settings after commits made through [`Lab::flake_mut`].
    pub fn save(&mut self) -> Result<()> {
        self.state.settings = self.flake.settings().clone();
        self.state.save()
    }

    /// The `lab` binary this lab runs its services with.
    pub fn lab_binary(&self) -> &Path {
        &self.lab_binary
    }

    /// The lab's description.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The builder node.
    pub fn builder(&self) -> &Node {
        &self.state.builder
    }

    /// The host nodes.
    pub fn hosts(&self) -> &[Node] {
        &self.state.hosts
    }

    /// The host or builder called `name`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.state
            .nodes()
            .find(|node| node.name == name)
            .with_context(|| format!("the lab has no node called {name}"))
    }

    /// The toy flake.
    pub fn flake(&self) -> &ToyFlake {
        &self.flake
    }

    /// The toy flake, to commit new revisions.
    pub fn flake_mut(&mut self) -> &mut ToyFlake {
        &mut self.flake
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// The cache's directory (a `file://` binary cache).
    pub fn cache_dir(&self) -> PathBuf {
        self.state.dir.join("cache")
    }

    /// Where the cache server listens.
    pub fn cache_address(&self) -> SocketAddr {
        SocketAddr::new(self.state.builder.address.into(), CACHE_PORT)
    }

    /// The cache's URL, as hosts' `substituters` name it.
    pub fn cache_url(&self) -> String {
        format!("http://{}", self.cache_address())
    }

    /// The cache signing key file (secret).
    pub fn cache_secret_key_file(&self) -> PathBuf {
        self.state.dir.join("keys/cache.secret")
    }

    /// The cache public key file.
    pub fn cache_public_key_file(&self) -> PathBuf {
        self.state.dir.join("keys/cache.public")
    }

    /// The cache public key, `NAME:base64`.
    pub fn cache_public_key(&self) -> Result<String> {
        let path = self.cache_public_key_file();
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let owned = self.state.owner.is_some();
        if owned {
            if let Err(error) = self.down() {
                eprintln!("lab teardown failed: {error:#}");
            }
        }
    }
}

/// Removes everything `state` describes, going on past errors.
pub fn teardown(state: &LabState) -> Result<()> {
    let mut errors = Vec::new();
    let links = net::list_links().unwrap_or_default();
    for node in state.nodes() {
        // The node's veth first, at once: its namespace's deletion would
        // free the name only later.
        let veth = state.slot.veth(node.address.octets()[3]);
        if links.contains(&veth) {
            if let Err(error) = net::remove_link(&veth) {
                errors.push(format!("{veth}: {error:#}"));
            }
        }
        if let Err(error) = net::remove_node(&node.netns) {
            errors.push(format!("{}: {error:#}", node.netns));
        }
        if let Err(error) = crate::cgroups::remove_host_cgroups(&node.netns) {
            errors.push(format!("{}: {error:#}", node.netns));
        }
    }
    if let Err(error) = net::remove_bridge(state.slot) {
        errors.push(format!("bridge: {error:#}"));
    }
    if state.dir.exists() {
        if let Err(error) = std::fs::remove_dir_all(&state.dir) {
            errors.push(format!("{}: {error}", state.dir.display()));
        }
    }
    let _ = std::fs::remove_file(state.registry_file());
    if !errors.is_empty() {
        bail!("lab teardown left things behind: {}", errors.join("; "));
    }
    Ok(())
}

/// The `outputs.out` of the one result of `nix build --json`.
fn out_path(json: &[u8]) -> Result<String> {
    let built: serde_json::Value =
        serde_json::from_slice(json).context("parsing nix build --json")?;
    built[0]["outputs"]["out"]
        .as_str()
        .map(str::to_owned)
        .context("nix build --json printed no outputs.out")
}

/// Waits until something accepts connections on `address`.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            bail!("nothing listens on {address} after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The Nix version on this machine, for the demo's banner.
pub fn nix_version() -> Result<String> {
    Ok(stdout_text(&run(Command::new("nix").arg("--version"))?))
}
