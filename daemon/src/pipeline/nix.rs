//! The argv of every Nix call a deploy makes, built by pure functions so they
//! can be checked exactly. Only classic commands and `--option`, which Nix
//! 2.8, current Nix and Lix all know.

use std::ffi::OsString;
use std::path::Path;

use deployd_protocol::StorePath;

use crate::config::Config;
use deployd_command::Invocation;

/// How many paths a fetch substitutes at once. Nix before 2.16 counts
/// substitutions against `max-jobs` (default 1: one path at a time); newer
/// Nix and Lix have `max-substitution-jobs`, 16 by default, and a fetch
/// builds nothing, so `max-jobs` changes nothing else there.
pub const FETCH_JOBS: u32 = 16;
/// How long Nix may reuse a cache's answer that a path is there (its
/// narinfo), in seconds. Nix asks for the whole closure at once, then once
/// more per path as it substitutes it: with no reuse, the second round is
/// one round trip after another. A stale answer (a path re-signed, or gone
/// from the cache) can only make a fetch fail, and a failed fetch is tried
/// again at once with no reuse at all ([`Freshness::Fresh`]).
pub const NARINFO_REUSE_S: u32 = 3600;

/// Which of Nix's remembered cache answers a fetch may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Positive answers (a path is there) younger than [`NARINFO_REUSE_S`];
    /// never a negative one, so a path published after a failed fetch is
    /// fetched by the next.
    ReuseFound,
    /// None: every answer asked again (the retry after a failure).
    Fresh,
}

/// Realises `system` from the configured caches only (after the fast
/// fetch's `stage`, a local cache, when there is one), checked against the
/// configured keys only (`require-sigs`: the stage is not trusted more than
/// the caches), with a GC root at `gc_root` so it survives until the
/// profile holds it, [`FETCH_JOBS`] paths at once.
pub fn realise(
    config: &Config,
    system: &StorePath,
    gc_root: &Path,
    freshness: Freshness,
    stage: Option<&str>,
) -> Invocation {
    let nix = &config.file.nix;
    let substituters: Vec<&str> = stage
        .into_iter()
        .chain(nix.substituters.iter().map(String::as_str))
        .collect();
    let positive_ttl = match freshness {
        Freshness::ReuseFound => NARINFO_REUSE_S,
        Freshness::Fresh => 0,
    };
    let mut args: Vec<OsString> = vec![
        "--realise".into(),
        system.as_str().into(),
        "--add-root".into(),
        gc_root.as_os_str().to_owned(),
    ];
    args.extend(fetch_options(config, &substituters, positive_ttl));
    Invocation::new(&nix.nix_store, args, config.fetch_timeout())
}

/// The options of every fetch from the caches: `substituters` (the
/// configured ones, after the stage for a fetch) and the trusted keys only, signatures required, Nix's
/// remembered narinfo answers as `positive_ttl` allows, [`FETCH_JOBS`]
/// paths at once. [`realise`] and [`realise_dry_run`] share them, so that
/// a plan asks exactly the caches a fetch would.
fn fetch_options(config: &Config, substituters: &[&str], positive_ttl: u32) -> Vec<OsString> {
    let nix = &config.file.nix;
    [
        "--option".into(),
        "substituters".into(),
        substituters.join(" "),
        "--option".into(),
        "trusted-public-keys".into(),
        nix.trusted_public_keys.join(" "),
        "--option".into(),
        "require-sigs".into(),
        "true".into(),
        "--option".into(),
        "narinfo-cache-negative-ttl".into(),
        "0".into(),
        "--option".into(),
        "narinfo-cache-positive-ttl".into(),
        positive_ttl.to_string(),
        "--option".into(),
        "max-jobs".into(),
        FETCH_JOBS.to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// What a fetch of `system` would do, without doing it (`push plan`):
/// `nix-store --realise --dry-run` with the very options of [`realise`],
/// which prints what it would fetch and its size (Nix's `printMissing`).
/// Nothing is added to the store; every cache answer is asked afresh.
pub fn realise_dry_run(config: &Config, system: &StorePath) -> Invocation {
    let mut args: Vec<OsString> = vec![
        "--realise".into(),
        "--dry-run".into(),
        system.as_str().into(),
    ];
    let substituters: Vec<&str> = config
        .file
        .nix
        .substituters
        .iter()
        .map(String::as_str)
        .collect();
    args.extend(fetch_options(config, &substituters, 0));
    Invocation::new(&config.file.nix.nix_store, args, config.fetch_timeout())
}

/// Whether `system` is valid in the store (exit status 0), asking no cache.
pub fn check_validity(config: &Config, system: &StorePath) -> Invocation {
    Invocation::new(
        &config.file.nix.nix_store,
        ["--check-validity", system.as_str()],
        config.fetch_timeout(),
    )
}

/// Points the system profile at `system` (a new generation).
pub fn set_profile(config: &Config, system: &StorePath) -> Invocation {
    let activation = &config.file.activation;
    Invocation::new(
        &config.file.nix.nix_env,
        [
            "-p".into(),
            activation.system_profile.as_os_str().to_owned(),
            "--set".into(),
            system.as_str().into(),
        ],
        config.switch_timeout(),
    )
}

/// Points the system profile back at generation `number`.
pub fn switch_generation(config: &Config, number: u64) -> Invocation {
    let activation = &config.file.activation;
    Invocation::new(
        &config.file.nix.nix_env,
        [
            "-p".into(),
            activation.system_profile.as_os_str().to_owned(),
            "--switch-generation".into(),
            number.to_string().into(),
        ],
        config.switch_timeout(),
    )
}

/// Keeps `system` (already in the store) alive through a GC root at `gc_root`.
pub fn add_gc_root(config: &Config, system: &str, gc_root: &Path) -> Invocation {
    Invocation::new(
        &config.file.nix.nix_store,
        [
            "--realise".into(),
            system.into(),
            "--add-root".into(),
            gc_root.as_os_str().to_owned(),
        ],
        config.fetch_timeout(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let key = deployd_protocol::SecretKey::generate("ops-1".parse().expect("name"))
            .expect("random")
            .public_key();
        let cache = deployd_protocol::SecretKey::generate("kelyus-1".parse().expect("name"))
            .expect("random")
            .public_key();
        let text = format!(
            "hostname = \"sambirano\"\n[[trusted_keys]]\nkey = \"{key}\"\n[nix]\nsubstituters = [\"http://kelyus:5000\", \"https://cache.example\"]\ntrusted_public_keys = [\"{cache}\"]\n"
        );
        Config::from_toml(&text, Path::new("test.toml")).expect("config")
    }

    fn argv(invocation: &Invocation) -> Vec<OsString> {
        let mut argv = vec![invocation.program.clone().into_os_string()];
        argv.extend(invocation.args.iter().cloned());
        argv
    }

    #[test]
    fn realise_uses_the_configured_caches_and_keys_only() {
        let config = config();
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path");
        let invocation = realise(
            &config,
            &system,
            Path::new("/var/lib/deployd/gc-roots/fetched"),
            Freshness::ReuseFound,
            None,
        );
        let keys = config.file.nix.trusted_public_keys.join(" ");
        let expected: Vec<OsString> = [
            "nix-store",
            "--realise",
            system.as_str(),
            "--add-root",
            "/var/lib/deployd/gc-roots/fetched",
            "--option",
            "substituters",
            "http://kelyus:5000 https://cache.example",
            "--option",
            "trusted-public-keys",
            &keys,
            "--option",
            "require-sigs",
            "true",
            "--option",
            "narinfo-cache-negative-ttl",
            "0",
            "--option",
            "narinfo-cache-positive-ttl",
            "3600",
            "--option",
            "max-jobs",
            "16",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(argv(&invocation), expected);
        let fresh = realise(
            &config,
            &system,
            Path::new("/var/lib/deployd/gc-roots/fetched"),
            Freshness::Fresh,
            Some("file:///var/lib/deployd/fetch/d-1"),
        );
        let fresh = argv(&fresh);
        let substituters = fresh
            .iter()
            .position(|arg| arg == "substituters")
            .expect("substituters");
        assert_eq!(
            fresh[substituters + 1],
            "file:///var/lib/deployd/fetch/d-1 http://kelyus:5000 https://cache.example"
        );
        let ttl = fresh
            .iter()
            .position(|arg| arg == "narinfo-cache-positive-ttl")
            .expect("positive ttl");
        assert_eq!(fresh[ttl + 1], "0");
    }

    #[test]
    fn validity_is_checked_without_asking_a_cache() {
        let config = config();
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path");
        let expected: Vec<OsString> = ["nix-store", "--check-validity", system.as_str()]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(argv(&check_validity(&config, &system)), expected);
    }

    #[test]
    fn a_dry_run_asks_exactly_what_a_fetch_asks() {
        let config = config();
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path");
        let fetch = argv(&realise(
            &config,
            &system,
            Path::new("/var/lib/deployd/gc-roots/fetched"),
            Freshness::Fresh,
            None,
        ));
        let dry = argv(&realise_dry_run(&config, &system));
        assert_eq!(
            dry[..4],
            ["nix-store", "--realise", "--dry-run", system.as_str()]
        );
        // The same options, in the same order, every answer asked afresh.
        assert_eq!(dry[4..], fetch[5..]);
    }

    #[test]
    fn profile_commands() {
        let config = config();
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path");
        let set: Vec<OsString> = [
            "nix-env",
            "-p",
            "/nix/var/nix/profiles/system",
            "--set",
            system.as_str(),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(argv(&set_profile(&config, &system)), set);
        let back: Vec<OsString> = [
            "nix-env",
            "-p",
            "/nix/var/nix/profiles/system",
            "--switch-generation",
            "7",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(argv(&switch_generation(&config, 7)), back);
    }
}
