//! The argv of every Nix and SSH call `push` makes, built by pure functions;
//! they run through the one runner (`deployd_command`). Only commands
//! and flags that Nix 2.8, current Nix and Lix share.

use std::path::Path;
use std::time::Duration;

use deployd_command::{CommandError, Invocation};
use deployd_protocol::{HostName, StorePath};

/// Longest evaluation, build or copy.
pub const NIX_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// The experimental features the flake commands need (the first two: `nix`
/// commands without flakes).
pub const FEATURES: [&str; 4] = [
    "--extra-experimental-features",
    "nix-command",
    "--extra-experimental-features",
    "flakes",
];

/// One evaluation of every host's system, and of the configurations'
/// names: `{"names": [...], "systems": {host: {drv, out}}}` as JSON. A host
/// the flake has no configuration for is left out of `systems` (not an
/// evaluation error), so push can name it and the names there are.
pub fn evaluate_systems(flake: &str, hosts: &[HostName]) -> Invocation {
    let names: Vec<String> = hosts.iter().map(|host| format!("\"{host}\"")).collect();
    let apply = format!(
        "configurations: {{ names = builtins.attrNames configurations; \
         systems = builtins.listToAttrs (map (host: {{ name = host; value = \
         let system = configurations.${{host}}.config.system.build.toplevel; \
         in {{ drv = system.drvPath; out = system.outPath; }}; }}) \
         (builtins.filter (host: builtins.hasAttr host configurations) [ {} ])); }}",
        names.join(" ")
    );
    evaluate_configurations(flake, &apply)
}

/// `apply` (a Nix function) applied to the flake's `nixosConfigurations`,
/// its value printed as JSON.
pub fn evaluate_configurations(flake: &str, apply: &str) -> Invocation {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "eval".into(),
        "--json".into(),
        format!("{flake}#nixosConfigurations"),
        "--apply".into(),
        apply.to_owned(),
    ]);
    Invocation::new("nix", args, NIX_TIMEOUT)
}

/// `error` with its command line cut before `--apply`: push's own
/// expression says nothing to whoever reads why an evaluation failed (Nix's
/// message, in the error's tail, does).
pub fn abbreviate_apply(error: CommandError) -> CommandError {
    let shorten = |command: String| match command.split_once(" --apply ") {
        Some((before, _)) => format!("{before} --apply <push's expression>"),
        None => command,
    };
    match error {
        CommandError::Failed {
            command,
            status,
            tail,
        } => CommandError::Failed {
            command: shorten(command),
            status,
            tail,
        },
        CommandError::Timeout { command, timeout } => CommandError::Timeout {
            command: shorten(command),
            timeout,
        },
        other => other,
    }
}

/// Builds the derivations here (where `nix.buildMachines` may spread the work).
pub fn realise(derivations: &[String]) -> Invocation {
    // GC roots are added right after, one per host.
    let mut args = vec!["--realise".to_owned(), "--no-gc-warning".to_owned()];
    args.extend(derivations.iter().cloned());
    Invocation::new("nix-store", args, NIX_TIMEOUT)
}

/// Keeps `path` alive with a GC root at `root` (an indirect root).
pub fn add_root(path: &str, root: &Path) -> Invocation {
    Invocation::new(
        "nix-store",
        [
            "--realise".into(),
            path.to_owned(),
            "--add-root".into(),
            root.display().to_string(),
        ],
        NIX_TIMEOUT,
    )
}

/// Copies derivations to the build host's store (`ssh-ng://`).
pub fn copy_derivations(build_host: &str, derivations: &[String]) -> Invocation {
    let mut args: Vec<String> = FEATURES[..2].iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "copy".into(),
        "--derivation".into(),
        "--to".into(),
        format!("ssh-ng://{build_host}"),
    ]);
    args.extend(derivations.iter().cloned());
    Invocation::new("nix", args, NIX_TIMEOUT)
}

/// Runs `script` on the build host with `ssh` (options from `NIX_SSHOPTS`,
/// as Nix itself takes them).
pub fn on_build_host(build_host: &str, script: &str) -> Invocation {
    ssh(build_host, &[], script, NIX_TIMEOUT)
}

/// Runs `script` on `destination` with `ssh`: the options from
/// `NIX_SSHOPTS` first (ssh keeps the first value of an option, so the
/// operator's own win), then `extra_options`, never asking for a password.
pub fn ssh(
    destination: &str,
    extra_options: &[&str],
    script: &str,
    timeout: Duration,
) -> Invocation {
    let mut args: Vec<String> = std::env::var("NIX_SSHOPTS")
        .map(|options| options.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    args.extend(["-o".into(), "BatchMode=yes".into()]);
    args.extend(extra_options.iter().map(|option| (*option).to_owned()));
    args.extend([destination.to_owned(), "--".into(), script.to_owned()]);
    Invocation::new("ssh", args, timeout)
}

/// The script that builds the derivations on the build host and keeps a GC
/// root there for each (`~/.local/state/deployd/gc-roots/<host>`). Host
/// names and store paths check themselves (no quote or space can occur);
/// the paths are quoted all the same, since `?` is a shell pattern character.
pub fn remote_build_script(builds: &[(HostName, StorePath)]) -> String {
    let mut script = String::from("set -e; mkdir -p ~/.local/state/deployd/gc-roots");
    for (host, derivation) in builds {
        script.push_str(&format!(
            "; nix-store --realise '{derivation}' --add-root ~/.local/state/deployd/gc-roots/'{host}' >/dev/null"
        ));
    }
    script
}

/// Refuses a build host that `ssh` would read as an option.
pub fn check_build_host(build_host: &str) -> Result<(), String> {
    if build_host.is_empty()
        || build_host.starts_with('-')
        || build_host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{build_host:?} is not an SSH destination (user@host)"
        ));
    }
    Ok(())
}

/// Copies built closures to the hosts' cache, from the build host's store
/// when there is one, signing with `sign_key_file` when given.
pub fn copy_closures(
    copy_to: &str,
    sign_key_file: Option<&Path>,
    build_host: Option<&str>,
    paths: &[String],
) -> Invocation {
    let mut target = copy_to.to_owned();
    if let Some(key) = sign_key_file {
        let separator = if target.contains('?') { '&' } else { '?' };
        target.push_str(&format!("{separator}secret-key={}", key.display()));
    }
    let mut args: Vec<String> = FEATURES[..2].iter().map(|s| (*s).to_owned()).collect();
    args.extend(["copy".into(), "--to".into(), target]);
    if let Some(host) = build_host {
        args.extend(["--from".into(), format!("ssh-ng://{host}")]);
    }
    args.extend(paths.iter().cloned());
    Invocation::new("nix", args, NIX_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_evaluation_for_every_host() {
        let hosts: Vec<HostName> =
            vec!["sambirano".parse().expect("h"), "isalo".parse().expect("h")];
        let argv = evaluate_systems("git+file:///fleet?rev=abc", &hosts).words();
        assert_eq!(
            argv[..7],
            [
                "nix",
                "--extra-experimental-features",
                "nix-command",
                "--extra-experimental-features",
                "flakes",
                "eval",
                "--json"
            ]
        );
        assert_eq!(argv[7], "git+file:///fleet?rev=abc#nixosConfigurations");
        assert!(
            argv[9].ends_with("[ \"sambirano\" \"isalo\" ])); }"),
            "{}",
            argv[9]
        );
        assert!(argv[9].contains("names = builtins.attrNames configurations;"));
        assert!(argv[9].contains("drv = system.drvPath; out = system.outPath;"));
    }

    #[test]
    fn a_failed_evaluation_does_not_show_push_s_expression() {
        let hosts: Vec<HostName> = vec!["sambirano".parse().expect("h")];
        let command = evaluate_systems("git+file:///fleet?rev=abc", &hosts).display();
        let error = abbreviate_apply(CommandError::Timeout {
            command,
            timeout: NIX_TIMEOUT,
        });
        let CommandError::Timeout { command, .. } = error else {
            panic!("the same error");
        };
        assert!(
            command.ends_with(
                "eval --json git+file:///fleet?rev=abc#nixosConfigurations --apply <push's expression>"
            ),
            "{command}"
        );
    }

    #[test]
    fn copies_sign_when_asked_and_come_from_the_build_host() {
        let paths = vec!["/nix/store/a-x".to_owned()];
        assert_eq!(
            copy_closures(
                "file:///srv/cache",
                Some(Path::new("/k/cache.secret")),
                Some("root@kelyus"),
                &paths
            )
            .words(),
            [
                "nix",
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--to",
                "file:///srv/cache?secret-key=/k/cache.secret",
                "--from",
                "ssh-ng://root@kelyus",
                "/nix/store/a-x"
            ]
        );
        assert_eq!(
            copy_closures("s3://bucket?region=eu", None, None, &paths).words()[3..6],
            ["copy", "--to", "s3://bucket?region=eu"]
        );
    }

    #[test]
    fn remote_builds_keep_roots_on_the_build_host() {
        let drv: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x.drv"
            .parse()
            .expect("path");
        let script = remote_build_script(&[("sambirano".parse().expect("h"), drv)]);
        assert_eq!(
            script,
            "set -e; mkdir -p ~/.local/state/deployd/gc-roots; nix-store --realise '/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x.drv' --add-root ~/.local/state/deployd/gc-roots/'sambirano' >/dev/null"
        );
        assert!(check_build_host("root@kelyus").is_ok());
        assert!(check_build_host("-oProxyCommand=sh").is_err());
        assert!(check_build_host("a b").is_err());
    }
}
