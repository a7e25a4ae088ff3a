//! Exit statuses, the same for every subcommand: 0 every host succeeded, 1
//! at least one host failed, rolled back, was unreachable, refused or was
//! not started, 2 bad usage, config or input (found before any host was
//! asked). An error says which it is by its type, not its words: a
//! [`HostError`] or a [`HostProblem`] anywhere in its chain is a host's
//! trouble (1), anything else is bad input (2).

use std::process::ExitCode;

use crate::client::HostError;

/// Exit status when a host failed, was unreachable or was not started.
pub const HOST_FAILED: u8 = 1;
/// Exit status for bad usage, config or input.
pub const BAD_INPUT: u8 = 2;

/// What `--help` of each subcommand says about its exit statuses.
pub const HELP: &str = "Exit status: 0 every host succeeded; 1 at least one host failed, \
                        rolled back, was unreachable, refused or was not started; 2 bad usage, \
                        config or input (never for an unreachable host).";

/// A host's trouble that is no [`HostError`]: it answered, but not with
/// what was asked for (no deploy yet, another name than the inventory's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostProblem(pub String);

/// The exit status for an error that ended a subcommand.
pub fn status_of(error: &anyhow::Error) -> u8 {
    let host_trouble = error.chain().any(|cause| {
        cause.downcast_ref::<HostError>().is_some() || cause.downcast_ref::<HostProblem>().is_some()
    });
    if host_trouble {
        HOST_FAILED
    } else {
        BAD_INPUT
    }
}

/// `error` and its causes joined by ": ", down to the first [`HostError`]:
/// that one's words say all its causes say, in the terms of deployd.
pub fn describe(error: &anyhow::Error) -> String {
    let mut words = Vec::new();
    for cause in error.chain() {
        words.push(cause.to_string());
        if cause.downcast_ref::<HostError>().is_some() {
            break;
        }
    }
    words.join(": ")
}

/// 0 when `failed` is false, else 1.
pub fn hosts(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(HOST_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_host_error_anywhere_in_the_chain_is_1_else_2() {
        let refused = HostError::Refused(deployd_protocol::ErrorBody {
            error: deployd_protocol::ErrorCode::NotFound,
            message: "no such deploy".into(),
        });
        let wrapped = Err::<(), _>(refused)
            .context("reading deploy d-1 on sambirano")
            .expect_err("an error");
        assert_eq!(status_of(&wrapped), HOST_FAILED);

        let no_deploy = anyhow::Error::new(HostProblem("sambirano has no deploy yet".into()));
        assert_eq!(status_of(&no_deploy), HOST_FAILED);

        let usage = anyhow::anyhow!("--confirm must be 1 to 3600 seconds");
        assert_eq!(status_of(&usage), BAD_INPUT);
        let config = Err::<(), _>(std::io::Error::other("no such file"))
            .context("reading push.toml")
            .expect_err("an error");
        assert_eq!(status_of(&config), BAD_INPUT);
    }
}
