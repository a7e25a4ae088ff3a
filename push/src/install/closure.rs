//! Getting the built system into ROOT's store on the new machine (not into
//! the installer's store, which lives in its memory), one of two ways,
//! chosen here and printed with the reason:
//!
//! - **pull**: the new machine fetches it from one of the system's own
//!   substituters, when it reaches one that holds it: the bytes come from
//!   the fleet's cache over the new machine's network rather than through
//!   the operator's uplink, and Nix checks them against the cache keys the
//!   host will trust (`require-sigs`).
//! - **copy**: otherwise (or with `--copy`), `nix copy` over SSH straight
//!   into ROOT's store (`ssh://DEST?remote-store=local?root=ROOT`: the
//!   installer runs `nix-store --serve --write --store local?root=ROOT`).
//!   With a build host, the copy reads from the build host's store
//!   (`--from ssh-ng://H`) and runs here: the operator's SSH access to the
//!   new machine is what `push install` already relies on, while the build
//!   host would need keys of its own for it.

use std::time::Duration;

use anyhow::Result;
use deployd_command::{self as command, Invocation};
use deployd_protocol::StorePath;

use super::target::{on_target, quoted, run_keeping_tail, InstallRoot, SshDestination};
use crate::nix;

/// How long asking the caches may take: each is given a short connect
/// timeout and one attempt, so this only bounds a cache that hangs.
const CACHE_CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a single cache is asked (when `timeout` is there).
const CACHE_ASK_S: u32 = 20;
/// What the cache check prefixes its answer with.
const CACHE_MARK: &str = "deployd-cache: ";

/// Where the closure comes from.
pub struct Delivery<'a> {
    /// The new machine.
    pub destination: &'a SshDestination,
    /// Its root file system's mount point.
    pub root: &'a InstallRoot,
    /// The system.
    pub system: &'a StorePath,
    /// The system's substituters (`services.deployd.settings.nix`).
    pub substituters: &'a [String],
    /// The cache keys the system trusts.
    pub trusted_public_keys: &'a [String],
    /// The build host holding the closure, if it was built there.
    pub build_host: Option<&'a str>,
    /// How to choose.
    pub way: Choice,
}

/// `--copy`, or let the new machine's caches decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Pull when the new machine reaches a cache holding the system.
    PullWhenPossible,
    /// Copy over SSH, whatever the caches hold.
    Copy,
}

/// Puts the system's closure into ROOT's store on the new machine.
pub async fn deliver(delivery: &Delivery<'_>) -> Result<()> {
    let address = delivery.destination.address();
    let root = delivery.root;
    let reason = match delivery.way {
        Choice::Copy => "--copy was given".to_owned(),
        Choice::PullWhenPossible => match find_cache(delivery).await {
            Ok(cache) => {
                eprintln!(
                    "push: pulling the system into {root} on {address} from {cache}: {address} reaches that cache and it holds the system, so the bytes come over the new machine's own network, checked against the cache keys the host will trust"
                );
                match pull(delivery, &cache).await {
                    Ok(()) => return Ok(()),
                    Err(why) => format!("the pull from {cache} failed ({why})"),
                }
            }
            Err(why) => why,
        },
    };
    let from = delivery
        .build_host
        .map_or("this machine".to_owned(), |host| {
            format!("the build host {host}")
        });
    eprintln!("push: copying the system over SSH from {from} into {root} on {address}: {reason}");
    let copy = copy_closure(
        delivery.destination,
        root,
        delivery.build_host,
        delivery.system,
    );
    command::run(&copy, |line| eprintln!("copy: {line}"))
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "copying the system to {address} failed: {}",
                crate::inventory::one_line(&error.to_string())
            )
        })?;
    Ok(())
}

/// The substituter to pull from, or why there is none.
async fn find_cache(delivery: &Delivery<'_>) -> Result<String, String> {
    let address = delivery.destination.address();
    if delivery.substituters.is_empty() {
        return Err("the system names no substituters".into());
    }
    if delivery.trusted_public_keys.is_empty() {
        return Err("the system trusts no cache key, so nothing it pulls could be checked".into());
    }
    let script = cache_check_script(delivery.system, delivery.substituters);
    let invocation = on_target(delivery.destination, &script, CACHE_CHECK_TIMEOUT);
    let answer = match run_keeping_tail(&invocation, |_| {}).await {
        Ok(captured) => captured.stdout,
        Err(failure) => return Err(format!("asking {address}'s caches failed ({failure})")),
    };
    read_cache_answer(&answer, delivery.substituters).map_err(|why| match why {
        NoCache::NoNix => format!("{address} has no nix command to ask its caches with"),
        NoCache::NoneHolds => format!(
            "{address} reaches none of the system's substituters ({}) holding it",
            delivery.substituters.join(", ")
        ),
    })
}

/// Why the new machine cannot pull.
#[derive(Debug, PartialEq, Eq)]
enum NoCache {
    /// It has no `nix` to ask with.
    NoNix,
    /// None of the caches answered with the system.
    NoneHolds,
}

/// Asks each cache in turn, from the new machine, whether it holds the
/// system; prints the first that does. A short connect timeout, one
/// attempt and no remembered "not there" answer, so that a cache the new
/// machine cannot reach costs seconds and a retry sees a fresh upload.
fn cache_check_script(system: &StorePath, substituters: &[String]) -> String {
    let caches: Vec<String> = substituters.iter().map(|url| quoted(url)).collect();
    format!(
        r#"command -v nix >/dev/null 2>&1 || {{ echo '{CACHE_MARK}no-nix'; exit 0; }}
limit=; command -v timeout >/dev/null 2>&1 && limit='timeout {CACHE_ASK_S}'
for cache in {caches}; do
  if $limit nix --extra-experimental-features nix-command path-info --store "$cache" --option connect-timeout 5 --option download-attempts 1 --option narinfo-cache-negative-ttl 0 {system} >/dev/null 2>&1; then
    echo "{CACHE_MARK}$cache"; exit 0
  fi
done
echo '{CACHE_MARK}none'"#,
        caches = caches.join(" "),
        system = quoted(system.as_str()),
    )
}

fn read_cache_answer(output: &str, substituters: &[String]) -> Result<String, NoCache> {
    let answer = output
        .lines()
        .filter_map(|line| line.strip_prefix(CACHE_MARK))
        .next_back();
    match answer {
        Some("no-nix") => Err(NoCache::NoNix),
        Some(cache) => substituters
            .iter()
            .find(|url| url.as_str() == cache)
            .cloned()
            .ok_or(NoCache::NoneHolds),
        None => Err(NoCache::NoneHolds),
    }
}

/// Realises the system in ROOT's store on the new machine through the
/// system's own substituters (`cache` first) and keys only, signatures
/// required: what the host will trust, nothing of the installer's.
fn pull_script(delivery: &Delivery<'_>, cache: &str) -> String {
    let mut caches = vec![cache.to_owned()];
    caches.extend(
        delivery
            .substituters
            .iter()
            .filter(|url| url.as_str() != cache)
            .cloned(),
    );
    format!(
        "nix-store --store {root} --realise {system} --no-gc-warning \
         --option substituters {caches} --option trusted-public-keys {keys} \
         --option require-sigs true --option connect-timeout 10 >/dev/null",
        root = quoted(delivery.root.as_str()),
        system = quoted(delivery.system.as_str()),
        caches = quoted(&caches.join(" ")),
        keys = quoted(&delivery.trusted_public_keys.join(" ")),
    )
}

async fn pull(delivery: &Delivery<'_>, cache: &str) -> Result<(), String> {
    let script = pull_script(delivery, cache);
    let invocation = on_target(delivery.destination, &script, nix::NIX_TIMEOUT);
    run_keeping_tail(&invocation, |line| eprintln!("pull: {line}"))
        .await
        .map(|_| ())
        .map_err(|failure| failure.to_string())
}

/// `nix copy` of the closure into ROOT's store on the new machine, from
/// here or from the build host's store.
pub fn copy_closure(
    destination: &SshDestination,
    root: &InstallRoot,
    build_host: Option<&str>,
    system: &StorePath,
) -> Invocation {
    let root_store = format!("local?root={root}");
    let remote_store = percent_encoding::utf8_percent_encode(&root_store, QUERY_VALUE);
    let mut args: Vec<String> = nix::FEATURES[..2].iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "copy".into(),
        "--to".into(),
        format!("ssh://{destination}?remote-store={remote_store}"),
    ]);
    if let Some(host) = build_host {
        args.extend(["--from".into(), format!("ssh-ng://{host}")]);
    }
    args.push(system.to_string());
    Invocation::new("nix", args, nix::NIX_TIMEOUT)
}

/// A query value: everything but letters, digits and `-._~` encoded, so
/// the inner store URL's own `?` and `=` stay inside the value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> StorePath {
        "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh"
            .parse()
            .expect("path")
    }

    #[test]
    fn copies_go_straight_into_the_root_store() {
        let destination: SshDestination = "root@fresh.lan".parse().expect("destination");
        let root: InstallRoot = "/mnt".parse().expect("root");
        assert_eq!(
            copy_closure(&destination, &root, None, &system()).words(),
            [
                "nix",
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--to",
                "ssh://root@fresh.lan?remote-store=local%3Froot%3D%2Fmnt",
                "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh"
            ]
        );
        assert_eq!(
            copy_closure(&destination, &root, Some("root@kelyus"), &system()).words()[5..8],
            [
                "ssh://root@fresh.lan?remote-store=local%3Froot%3D%2Fmnt",
                "--from",
                "ssh-ng://root@kelyus"
            ]
        );
    }

    #[test]
    fn the_cache_check_quotes_and_bounds_every_ask() {
        let caches = vec!["http://kelyus:5000".to_owned(), "https://x/'y".to_owned()];
        let script = cache_check_script(&system(), &caches);
        crate::install::target::assert_parses(&script);
        assert!(
            script.contains("for cache in 'http://kelyus:5000' 'https://x/'\\''y'; do"),
            "{script}"
        );
        assert!(script.contains(
            "path-info --store \"$cache\" --option connect-timeout 5 --option download-attempts 1"
        ));
        assert!(script.contains("'/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh'"));
        assert_eq!(
            read_cache_answer("deployd-cache: http://kelyus:5000\n", &caches),
            Ok("http://kelyus:5000".to_owned())
        );
        assert_eq!(
            read_cache_answer("deployd-cache: none\n", &caches),
            Err(NoCache::NoneHolds)
        );
        assert_eq!(
            read_cache_answer("deployd-cache: no-nix\n", &caches),
            Err(NoCache::NoNix)
        );
        assert_eq!(
            read_cache_answer("deployd-cache: http://elsewhere\n", &caches),
            Err(NoCache::NoneHolds)
        );
    }

    #[test]
    fn pulls_trust_only_the_systems_own_caches_and_keys() {
        let destination: SshDestination = "root@fresh.lan".parse().expect("destination");
        let root: InstallRoot = "/mnt".parse().expect("root");
        let substituters = vec![
            "https://cache.nixos.org".to_owned(),
            "http://kelyus:5000".to_owned(),
        ];
        let keys = vec![
            "kelyus-1:AAAA".to_owned(),
            "cache.nixos.org-1:BBBB".to_owned(),
        ];
        let system = system();
        let delivery = Delivery {
            destination: &destination,
            root: &root,
            system: &system,
            substituters: &substituters,
            trusted_public_keys: &keys,
            build_host: None,
            way: Choice::PullWhenPossible,
        };
        crate::install::target::assert_parses(&pull_script(&delivery, "http://kelyus:5000"));
        assert_eq!(
            pull_script(&delivery, "http://kelyus:5000"),
            "nix-store --store '/mnt' --realise '/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-fresh' --no-gc-warning \
             --option substituters 'http://kelyus:5000 https://cache.nixos.org' \
             --option trusted-public-keys 'kelyus-1:AAAA cache.nixos.org-1:BBBB' \
             --option require-sigs true --option connect-timeout 10 >/dev/null"
        );
    }
}
