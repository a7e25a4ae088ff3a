//! A system's closure with every path's unpacked size, read from the local
//! store with classic commands Nix 2.8, current Nix and Lix all know:
//! `nix-store --query --requisites`, then `--size` of those paths.

use deployd_command::{self as command, Invocation};
use deployd_protocol::plan::ClosurePath;
use deployd_protocol::StorePath;

use super::PlanError;
use crate::config::Config;

/// The closure of `system` (in the store), sorted by path.
pub async fn of(config: &Config, system: &StorePath) -> Result<Vec<ClosurePath>, PlanError> {
    let listed = command::run(&requisites(config, system), |_| {}).await?;
    let paths = listed
        .stdout
        .lines()
        .map(str::parse)
        .collect::<Result<Vec<StorePath>, _>>()?;
    let sized = command::run(&sizes(config, &paths), |_| {}).await?;
    let sizes: Vec<&str> = sized.stdout.lines().collect();
    if sizes.len() != paths.len() {
        return Err(PlanError::Unreadable(format!(
            "nix-store --query --size printed {} sizes for {} paths",
            sizes.len(),
            paths.len()
        )));
    }
    let mut closure = paths
        .into_iter()
        .zip(sizes)
        .map(|(path, size)| {
            let nar_size = size.trim().parse().map_err(|_| {
                PlanError::Unreadable(format!("{size:?} is not the size of {path}"))
            })?;
            Ok(ClosurePath { path, nar_size })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    closure.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    Ok(closure)
}

/// `nix-store --query --requisites SYSTEM`: its closure, one path a line.
fn requisites(config: &Config, system: &StorePath) -> Invocation {
    Invocation::new(
        &config.file.nix.nix_store,
        ["--query", "--requisites", system.as_str()],
        config.fetch_timeout(),
    )
}

/// `nix-store --query --size PATHS...`: each one's NAR size, a line each,
/// in order.
fn sizes(config: &Config, paths: &[StorePath]) -> Invocation {
    let mut args = vec!["--query".to_owned(), "--size".to_owned()];
    args.extend(paths.iter().map(|path| path.as_str().to_owned()));
    Invocation::new(&config.file.nix.nix_store, args, config.fetch_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn queries_are_classic_commands() {
        let key = deployd_protocol::SecretKey::generate("ops-1".parse().expect("name"))
            .expect("random")
            .public_key();
        let text = format!("hostname = \"sambirano\"\n[[trusted_keys]]\nkey = \"{key}\"\n[nix]\nsubstituters = [\"http://kelyus:5000\"]\ntrusted_public_keys = [\"{key}\"]\n");
        let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-x"
            .parse()
            .expect("path");
        assert_eq!(
            requisites(&config, &system).words(),
            ["nix-store", "--query", "--requisites", system.as_str()]
        );
        assert_eq!(
            sizes(&config, &[system.clone(), system.clone()]).words(),
            [
                "nix-store",
                "--query",
                "--size",
                system.as_str(),
                system.as_str()
            ]
        );
    }
}
