//! The user that evaluates and builds the fleet's flake for `push serve`:
//! another user than the service's, who cannot read the service's secret
//! files, so that nothing a commit's flake does (a `path:` input, a
//! `file://` fetch) can copy a secret into the world-readable store.
//!
//! Its Nix commands run through `setpriv` (util-linux): the user's and the
//! group's ids, no supplementary group, no capability (inheritable and so
//! ambient ones cleared) and no-new-privileges; then `env` gives it a home
//! of its own (Nix's caches) and lets its git read the service's clone,
//! which another user owns (`safe.directory`). Switching users takes
//! CAP_SETUID and CAP_SETGID: root, or the NixOS module's ambient
//! capabilities. Before each build, [`BuildUser::check`] proves that the
//! switch works and that no secret file is readable by that user.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deployd_command::{self as command, CommandError, Invocation};

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Who evaluates and builds, and what it must not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    /// Its user, a name or a number (never root).
    pub user: String,
    /// Its group, a name or a number: the service's clone is readable by it.
    pub group: String,
    /// Its home, writable by it: Nix's caches (`~/.cache/nix`).
    pub home: PathBuf,
    /// The service's clone, which its git may read though the service owns it.
    pub repository: PathBuf,
    /// The service's secret files, none of which it may read.
    pub secret_files: Vec<PathBuf>,
}

impl BuildUser {
    /// `invocation`, run as this user.
    pub fn wrap(&self, invocation: &Invocation) -> Invocation {
        let mut args: Vec<OsString> = [
            format!("--reuid={}", self.user),
            format!("--regid={}", self.group),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--no-new-privs".into(),
            "--".into(),
            "env".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        // Its XDG directories are its home's, not the service's.
        for name in [
            "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
            "XDG_STATE_HOME",
        ] {
            args.extend(["-u".into(), name.into()]);
        }
        args.push(assignment("HOME", &self.home));
        args.extend([
            "GIT_CONFIG_COUNT=1".into(),
            "GIT_CONFIG_KEY_0=safe.directory".into(),
        ]);
        args.push(assignment("GIT_CONFIG_VALUE_0", &self.repository));
        args.push(invocation.program.clone().into_os_string());
        args.extend(invocation.args.iter().cloned());
        Invocation {
            program: PathBuf::from("setpriv"),
            args,
            timeout: invocation.timeout,
        }
    }

    /// Makes its home (group-writable: the service's group is its group)
    /// and checks that it can run as this user, write its home, read the
    /// clone (once there is one), and read none of the secret files.
    pub async fn check(&self) -> Result<()> {
        if !self.home.exists() {
            create_home(&self.home)
                .with_context(|| format!("cannot make {}", self.home.display()))?;
        }
        let writable = Invocation::new(
            "test",
            [OsString::from("-w"), self.home.clone().into_os_string()],
            CHECK_TIMEOUT,
        );
        command::run(&self.wrap(&writable), |_| {})
            .await
            .with_context(|| {
                format!(
                    "cannot run Nix as the build user {}:{} with its home {} (switching users takes CAP_SETUID and CAP_SETGID; the home must be writable by that user)",
                    self.user,
                    self.group,
                    self.home.display()
                )
            })?;
        // The clone, once fetched: through the service's group.
        if self.repository.exists() {
            let readable = Invocation::new(
                "test",
                [
                    OsString::from("-r"),
                    self.repository.clone().into_os_string(),
                ],
                CHECK_TIMEOUT,
            );
            command::run(&self.wrap(&readable), |_| {})
                .await
                .with_context(|| {
                    format!(
                        "the build user {} cannot read the clone {}: it needs the service's group, and the state directory that group's read access",
                        self.user,
                        self.repository.display()
                    )
                })?;
        }
        for file in &self.secret_files {
            let readable = Invocation::new(
                "test",
                [OsString::from("-r"), file.clone().into_os_string()],
                CHECK_TIMEOUT,
            );
            match command::run(&self.wrap(&readable), |_| {}).await {
                Ok(_) => bail!(
                    "the build user {} can read the secret file {}: make it readable by the service's user alone (mode 0400), or the flake could copy it into the store",
                    self.user,
                    file.display()
                ),
                // `test -r` said no.
                Err(CommandError::Failed { .. }) => {}
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("cannot tell whether the build user can read {}", file.display())
                    })
                }
            }
        }
        Ok(())
    }
}

/// `NAME=path`, for `env`.
fn assignment(name: &str, path: &Path) -> OsString {
    let mut text = OsString::from(format!("{name}="));
    text.push(path.as_os_str());
    text
}

/// The home, group-writable whatever the umask.
fn create_home(home: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home)?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o770))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> BuildUser {
        BuildUser {
            user: "deployd-forge-build".into(),
            group: "deployd-forge".into(),
            home: "/var/lib/deployd-forge/build".into(),
            repository: "/var/lib/deployd-forge/repository".into(),
            secret_files: vec!["/run/agenix/forge-token".into()],
        }
    }

    #[test]
    fn runs_a_command_as_the_build_user_without_privileges() {
        let nix = Invocation::new(
            "nix",
            ["eval", "--json", "git+file:///x?rev=1#nixosConfigurations"],
            Duration::from_secs(5),
        );
        let wrapped = user().wrap(&nix);
        assert_eq!(
            wrapped.words(),
            [
                "setpriv",
                "--reuid=deployd-forge-build",
                "--regid=deployd-forge",
                "--clear-groups",
                "--inh-caps=-all",
                "--no-new-privs",
                "--",
                "env",
                "-u",
                "XDG_CACHE_HOME",
                "-u",
                "XDG_CONFIG_HOME",
                "-u",
                "XDG_DATA_HOME",
                "-u",
                "XDG_STATE_HOME",
                "HOME=/var/lib/deployd-forge/build",
                "GIT_CONFIG_COUNT=1",
                "GIT_CONFIG_KEY_0=safe.directory",
                "GIT_CONFIG_VALUE_0=/var/lib/deployd-forge/repository",
                "nix",
                "eval",
                "--json",
                "git+file:///x?rev=1#nixosConfigurations",
            ]
        );
        assert_eq!(wrapped.timeout, nix.timeout);
    }
}
