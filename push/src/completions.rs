//! `push completions SHELL`: the shell's completion script for push, its
//! subcommands and their options, printed to stdout (clap_complete reads
//! them from the same definitions as `--help`). The Nix package installs
//! them for bash, zsh and fish.

use std::io::Write;

use clap_complete::Shell;

/// Options of `push completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsOptions {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Writes `shell`'s completions for `command` to `out`.
pub fn write(shell: Shell, command: &mut clap::Command, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, command, name, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command shaped like push's (the real one is tested on the binary).
    fn command() -> clap::Command {
        clap::Command::new("push")
            .arg(
                clap::Arg::new("all")
                    .long("all")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(clap::Command::new("status").arg(clap::Arg::new("json").long("json")))
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            write(shell, &mut command(), &mut out);
            let script = String::from_utf8(out).expect("UTF-8");
            assert!(script.contains("status"), "{shell}: {script}");
            assert!(script.contains("all"), "{shell}: {script}");
        }
    }
}
