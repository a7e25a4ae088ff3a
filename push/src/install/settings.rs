//! HOST's deployd settings, read from its system before anything is built
//! or written: a first generation without deployd, or with deployd trusting
//! nobody, is a machine the fleet could never deploy to. The same settings
//! say which caches the new machine may pull its system from.

use anyhow::{bail, Context, Result};
use deployd_command::{self as command, Invocation};
use deployd_protocol::HostName;

use crate::nix;

/// What `push install` needs of `services.deployd`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DeploydSettings {
    /// `services.deployd.enable` (false without the module).
    pub enable: bool,
    /// How many `settings.trusted_keys` there are.
    pub trusted_keys: usize,
    /// `settings.nix.substituters`: the caches the host fetches from.
    pub substituters: Vec<String>,
    /// `settings.nix.trusted_public_keys`: the cache keys it trusts.
    pub trusted_public_keys: Vec<String>,
}

/// One evaluation: `null` when the flake has no such host, else its
/// settings. Every attribute has an `or` default, so that a system without
/// the module evaluates (and is then refused with a clear reason); the
/// trusted keys are counted, not printed (a `key_file` path would otherwise
/// be copied into the store).
pub fn evaluate_settings(flake: &str, host: &HostName) -> Invocation {
    let apply = format!(
        "configurations: if configurations ? \"{host}\" then \
         let deployd = configurations.\"{host}\".config.services.deployd or {{ }}; \
         in {{ enable = deployd.enable or false; \
         trusted_keys = builtins.length (deployd.settings.trusted_keys or [ ]); \
         substituters = deployd.settings.nix.substituters or [ ]; \
         trusted_public_keys = deployd.settings.nix.trusted_public_keys or [ ]; }} \
         else null"
    );
    nix::evaluate_configurations(flake, &apply)
}

/// Reads HOST's settings from the flake at `flake` (a reference of exactly
/// one revision), refusing a host the fleet could not deploy to.
pub async fn read(flake: &str, host: &HostName) -> Result<DeploydSettings> {
    let evaluated = command::run(&evaluate_settings(flake, host), |_| {})
        .await
        .map_err(nix::abbreviate_apply)
        .with_context(|| format!("evaluating {host}'s deployd settings"))?;
    let settings = parse(&evaluated.stdout, host)?;
    check(&settings, host)?;
    Ok(settings)
}

fn parse(json: &str, host: &HostName) -> Result<DeploydSettings> {
    let settings: Option<DeploydSettings> =
        serde_json::from_str(json).context("reading nix eval's JSON")?;
    settings.with_context(|| {
        format!("the flake has no nixosConfigurations.{host}: add the host to the flake (at the revision installed) first")
    })
}

fn check(settings: &DeploydSettings, host: &HostName) -> Result<()> {
    if !settings.enable || settings.trusted_keys == 0 {
        bail!(
            "{host}'s system does not enable services.deployd with a trusted key: the fleet could never deploy to it; enable it before installing"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostName {
        "fresh".parse().expect("host")
    }

    #[test]
    fn one_evaluation_with_defaults_for_everything() {
        let invocation = evaluate_settings("git+file:///fleet?rev=abc", &host());
        let argv: Vec<String> = invocation
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv[4..7],
            [
                "eval",
                "--json",
                "git+file:///fleet?rev=abc#nixosConfigurations"
            ]
        );
        assert_eq!(argv[7], "--apply");
        let apply = &argv[8];
        assert!(apply.starts_with("configurations: if configurations ? \"fresh\" then"));
        assert!(apply.contains("services.deployd or { }"));
        assert!(apply.contains("enable = deployd.enable or false;"));
        assert!(apply.contains("builtins.length (deployd.settings.trusted_keys or [ ])"));
        assert!(apply.ends_with("else null"));
    }

    #[test]
    fn refuses_a_host_the_fleet_could_not_deploy_to() {
        let enabled = parse(
            r#"{"enable":true,"trusted_keys":1,"substituters":["http://kelyus:5000"],"trusted_public_keys":["kelyus-1:AAAA"]}"#,
            &host(),
        )
        .expect("parsed");
        assert!(check(&enabled, &host()).is_ok());
        assert_eq!(enabled.substituters, ["http://kelyus:5000"]);
        for json in [
            r#"{"enable":false,"trusted_keys":0,"substituters":[],"trusted_public_keys":[]}"#,
            r#"{"enable":true,"trusted_keys":0,"substituters":[],"trusted_public_keys":[]}"#,
        ] {
            let settings = parse(json, &host()).expect("parsed");
            let error = check(&settings, &host()).expect_err("refused");
            assert_eq!(
                error.to_string(),
                "fresh's system does not enable services.deployd with a trusted key: the fleet could never deploy to it; enable it before installing"
            );
        }
        let error = parse("null", &host()).expect_err("no host");
        assert!(
            error
                .to_string()
                .starts_with("the flake has no nixosConfigurations.fresh"),
            "{error}"
        );
    }
}
