//! `push man --out DIR`: writes push's manual pages, one per subcommand
//! (`push.1`, `push-status.1`, `push-log.1`, ...), rendered by clap_mangen
//! from the same definitions as `--help`, exit statuses included. It is for
//! packagers (the Nix package runs it at install time); operators read the
//! pages with `man push`. Listed in `push --help` rather than hidden: a
//! packager of another distribution finds it there, and clap_complete
//! offers hidden subcommands in its scripts all the same.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Options of `push man`.
#[derive(Debug, clap::Args)]
pub struct ManOptions {
    /// The directory the pages are written to (made if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes the pages of `command` and of each of its visible subcommands
/// into `options.out`.
pub fn run(options: &ManOptions, command: clap::Command) -> Result<()> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot make {}", options.out.display()))?;
    clap_mangen::generate_to(command, &options.out)
        .with_context(|| format!("cannot write the manual pages to {}", options.out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let command = clap::Command::new("push")
            .subcommand(clap::Command::new("status").about("Show every host"))
            .subcommand(clap::Command::new("man").hide(true));
        let options = ManOptions {
            out: dir.path().join("man1"),
        };
        run(&options, command).expect("written");
        let mut names: Vec<String> = std::fs::read_dir(&options.out)
            .expect("dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert_eq!(names, ["push-status.1", "push.1"]);
        let page = std::fs::read_to_string(options.out.join("push-status.1")).expect("page");
        assert!(
            page.starts_with(".ie") || page.contains(".TH push-status 1"),
            "{page}"
        );
    }
}
