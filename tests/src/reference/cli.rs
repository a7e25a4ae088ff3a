//! A command line's reference page, from the real binary's help: `BIN
//! --help`, then `BIN help SUB` for every subcommand it lists (and theirs),
//! so the page says what the binary says. `push` is a binary-only crate
//! whose `clap::Command` no other crate can reach; reading the help of the
//! binary itself needs no hidden subcommand and no change to the product.
//!
//! clap's help layout is parsed: the about text, `Usage:` and its
//! continuation lines, then sections (`Options:`, `Arguments:`,
//! `Commands:`, any custom heading) whose entries start two spaces in, with
//! their help on the same line after two spaces or on the lines below,
//! further in; `[default: ..]`, `[possible values: ..]` and the like are
//! taken off the help into columns of their own.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::markdown::{code, one_line, table};

/// One command's help, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Help {
    /// The text above `Usage:`.
    about: String,
    /// `Usage:` and its continuation lines.
    usage: String,
    /// The sections, in order.
    sections: Vec<Section>,
    /// Text after them (clap's `after_help`), but what is a section itself.
    after: String,
}

/// `Options:` and its entries, or another section.
#[derive(Debug, PartialEq, Eq)]
struct Section {
    /// The heading, without its colon.
    title: String,
    /// Its entries.
    entries: Vec<Entry>,
}

/// One option, argument or subcommand.
#[derive(Debug, Default, PartialEq, Eq)]
struct Entry {
    /// `-h, --help`, `--host <HOST>`, `[REV]`, `status`.
    spec: String,
    /// The help text, without the bracketed notes.
    help: String,
    /// `[default: ..]`.
    default: Option<String>,
    /// `[possible values: ..]`, or the list under `Possible values:`.
    values: Vec<String>,
    /// Other bracketed notes: `[aliases: ..]`, `[env: ..]`.
    notes: Vec<String>,
}

/// The bracketed notes clap puts after an entry's help.
const NOTES: [&str; 5] = [
    "default",
    "possible values",
    "aliases",
    "short aliases",
    "env",
];

/// The page of `binary`, whose name is `name`.
pub fn page(binary: &Path, name: &str) -> Result<String> {
    let top = parse(&help_text(binary, &[])?);
    let mut text = format!("# `{name}` command line\n\n");
    text.push_str(&command_text(&[name.to_owned()], &top));
    let mut queue: Vec<Vec<String>> = subcommands(&top).into_iter().map(|sub| vec![sub]).collect();
    while !queue.is_empty() {
        let path = queue.remove(0);
        let help = parse(&help_text(binary, &path)?);
        let mut words = vec![name.to_owned()];
        words.extend(path.iter().cloned());
        text.push('\n');
        text.push_str(&command_text(&words, &help));
        for (index, sub) in subcommands(&help).into_iter().enumerate() {
            let mut deeper = path.clone();
            deeper.push(sub);
            queue.insert(index, deeper);
        }
    }
    Ok(text)
}

/// What `binary --help` or `binary help SUB...` prints.
fn help_text(binary: &Path, path: &[String]) -> Result<String> {
    let mut command = Command::new(binary);
    if path.is_empty() {
        command.arg("--help");
    } else {
        command.arg("help").args(path);
    }
    // No colours, and no wrapping should the binary wrap to the terminal.
    command.env("NO_COLOR", "1").env("COLUMNS", "10000");
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            binary.display(),
            path.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("the help is not UTF-8")
}

/// The subcommands a help lists, but `help`.
fn subcommands(help: &Help) -> Vec<String> {
    help.sections
        .iter()
        .filter(|section| section.title == "Commands")
        .flat_map(|section| &section.entries)
        .map(|entry| entry.spec.clone())
        .filter(|name| name != "help")
        .collect()
}

/// clap's help, parsed.
fn parse(text: &str) -> Help {
    let lines: Vec<&str> = text.lines().collect();
    let usage_at = lines
        .iter()
        .position(|line| line.starts_with("Usage:"))
        .unwrap_or(lines.len());
    let mut help = Help {
        about: lines[..usage_at].join("\n").trim().to_owned(),
        ..Help::default()
    };
    let mut rest = lines[usage_at..].iter().peekable();
    if let Some(first) = rest.next() {
        let mut usage = vec![first.to_string()];
        while let Some(line) = rest.next_if(|line| line.starts_with(' ')) {
            usage.push(line.to_string());
        }
        help.usage = usage.join("\n");
    }
    let mut entry_lines: Vec<String> = Vec::new();
    let mut after: Vec<&str> = Vec::new();
    for line in rest {
        let indent = line.len() - line.trim_start().len();
        if !after.is_empty() {
            after.push(line);
        } else if indent == 0 && !line.is_empty() && !line.ends_with(':') {
            finish_entry(&mut help, &mut entry_lines);
            after.push(line);
        } else if indent == 0 && line.ends_with(':') {
            finish_entry(&mut help, &mut entry_lines);
            help.sections.push(Section {
                title: line.trim_end_matches(':').to_owned(),
                entries: Vec::new(),
            });
        } else if starts_entry(line) && !help.sections.is_empty() {
            finish_entry(&mut help, &mut entry_lines);
            entry_lines.push(line.to_string());
        } else if !entry_lines.is_empty() {
            entry_lines.push(line.to_string());
        }
    }
    finish_entry(&mut help, &mut entry_lines);
    help.after = after.join("\n").trim().to_owned();
    help
}

/// Whether `line` starts an entry: two spaces in, or six for a long option
/// without a short one (clap aligns it with those that have one).
fn starts_entry(line: &str) -> bool {
    let indent = line.len() - line.trim_start().len();
    indent == 2 || (indent == 6 && line.trim_start().starts_with("--"))
}

/// Adds the entry in `lines` (its first line, then its help's) to the last section.
fn finish_entry(help: &mut Help, lines: &mut Vec<String>) {
    let Some(first) = lines.first() else {
        return;
    };
    let first = first.trim();
    let (spec, inline) = first.split_once("  ").unwrap_or((first, ""));
    let mut body = vec![inline.trim().to_owned()];
    let mut values = Vec::new();
    let mut in_values = false;
    for line in &lines[1..] {
        let line = line.trim();
        if line == "Possible values:" {
            in_values = true;
        } else if let (true, Some(value)) = (in_values, line.strip_prefix("- ")) {
            values.push(value.to_owned());
        } else {
            in_values = false;
            body.push(line.to_owned());
        }
    }
    let mut entry = Entry {
        spec: spec.trim().to_owned(),
        values,
        ..Entry::default()
    };
    entry.help = take_notes(&body.join("\n"), &mut entry);
    if let Some(section) = help.sections.last_mut() {
        section.entries.push(entry);
    }
    lines.clear();
}

/// The help without its trailing bracketed notes, which go to `entry`.
fn take_notes(text: &str, entry: &mut Entry) -> String {
    let mut text = text.trim_end().to_owned();
    loop {
        let start = NOTES
            .iter()
            .filter_map(|note| text.rfind(&format!("[{note}: ")).map(|at| (at, *note)))
            .max_by_key(|(at, _)| *at);
        let Some((at, note)) = start.filter(|_| text.ends_with(']')) else {
            break;
        };
        let inner = text[at + note.len() + 3..text.len() - 1].trim().to_owned();
        match note {
            "default" => entry.default = Some(inner),
            "possible values" => {
                entry.values = inner.split(", ").map(str::to_owned).collect();
            }
            _ => entry.notes.insert(0, format!("{note}: {inner}")),
        }
        text.truncate(at);
        text = text.trim_end().to_owned();
    }
    text
}

/// One command's section of the page.
fn command_text(words: &[String], help: &Help) -> String {
    let heading = if words.len() == 1 { "##" } else { "###" };
    let mut text = format!("{heading} `{}`\n\n", words.join(" "));
    if !help.about.is_empty() {
        text.push_str(&format!("{}\n\n", help.about));
    }
    text.push_str(&format!("```text\n{}\n```\n", help.usage));
    for section in &help.sections {
        text.push_str(&format!("\n**{}**\n\n", section.title));
        if section.title == "Commands" {
            let rows: Vec<Vec<String>> = section
                .entries
                .iter()
                .map(|entry| vec![command_link(words, entry), entry.help.clone()])
                .collect();
            text.push_str(&table(&["Command", "Description"], &rows));
        } else {
            let rows: Vec<Vec<String>> = section.entries.iter().map(entry_row).collect();
            text.push_str(&without_empty_columns(
                &["Name", "Description", "Default", "Possible values"],
                &rows,
            ));
        }
    }
    if !help.after.is_empty() {
        text.push_str(&format!("\n{}\n", help.after));
    }
    text
}

/// A table of `rows`, without the columns no row has anything in.
fn without_empty_columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let kept: Vec<usize> = (0..header.len())
        .filter(|column| rows.iter().any(|row| !row[*column].is_empty()))
        .collect();
    let header: Vec<&str> = kept.iter().map(|column| header[*column]).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| kept.iter().map(|column| row[*column].clone()).collect())
        .collect();
    table(&header, &rows)
}

/// A subcommand's name, linked to its section (but `help`'s).
fn command_link(words: &[String], entry: &Entry) -> String {
    if entry.spec == "help" {
        return code(&entry.spec);
    }
    let anchor = [words.join("-"), entry.spec.clone()].join("-");
    format!("[{}](#{anchor})", code(&entry.spec))
}

/// An option's or argument's row.
fn entry_row(entry: &Entry) -> Vec<String> {
    let mut description = one_line(&entry.help);
    for note in &entry.notes {
        description.push_str(&format!(" ({note})"));
    }
    let values = entry
        .values
        .iter()
        .map(|value| match value.split_once(": ") {
            Some((name, help)) => format!("{}: {}", code(name), help.trim()),
            None => code(value),
        })
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        code(&entry.spec),
        description,
        entry.default.as_deref().map(code).unwrap_or_default(),
        values,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &str = "\
Deploy things

Usage: tool [OPTIONS] [REV]
       tool <COMMAND>

Commands:
  status  Show every host
  help    Print this message or the help of the given subcommand(s)

Arguments:
  [REV]  The revision [default: HEAD]

Options:
      --action <ACTION>  How to activate [default: switch] [possible values: switch, boot]
      --all              Every host
  -h, --help             Print help
";

    const LONG: &str = "\
Print completions

Usage: tool completions <SHELL>

Arguments:
  <SHELL>
          The shell

          Possible values:
          - bash: Bash
          - zsh:  Zsh

Options:
      --out <DIR>
          Where to write them.

          A second paragraph.

          [env: TOOL_OUT=]
          [default: .]
";

    #[test]
    fn same_line_help_is_parsed_with_its_notes() {
        let help = parse(SHORT);
        assert_eq!(help.about, "Deploy things");
        assert_eq!(
            help.usage,
            "Usage: tool [OPTIONS] [REV]\n       tool <COMMAND>"
        );
        assert_eq!(subcommands(&help), ["status"]);
        let options = &help.sections[2];
        assert_eq!(options.title, "Options");
        assert_eq!(options.entries[0].spec, "--action <ACTION>");
        assert_eq!(options.entries[0].help, "How to activate");
        assert_eq!(options.entries[0].default.as_deref(), Some("switch"));
        assert_eq!(options.entries[0].values, ["switch", "boot"]);
        assert_eq!(options.entries[2].spec, "-h, --help");
        assert_eq!(help.sections[1].entries[0].default.as_deref(), Some("HEAD"));
    }

    #[test]
    fn next_line_help_is_parsed_with_its_value_list() {
        let help = parse(LONG);
        let shell = &help.sections[0].entries[0];
        assert_eq!(shell.spec, "<SHELL>");
        assert_eq!(shell.help.trim(), "The shell");
        assert_eq!(shell.values, ["bash: Bash", "zsh:  Zsh"]);
        let out = &help.sections[1].entries[0];
        assert_eq!(
            one_line(&out.help),
            "Where to write them.<br>A second paragraph."
        );
        assert_eq!(out.default.as_deref(), Some("."));
        assert_eq!(out.notes, ["env: TOOL_OUT="]);
    }

    #[test]
    fn text_after_the_sections_is_kept_apart() {
        let help = parse(&format!(
            "{SHORT}\nExit status: 0 when every host succeeded.\n  More.\n"
        ));
        assert_eq!(help.sections[2].entries.len(), 3);
        assert_eq!(help.sections[2].entries[2].help, "Print help");
        assert_eq!(
            help.after,
            "Exit status: 0 when every host succeeded.\n  More."
        );
    }

    #[test]
    fn rows_show_defaults_and_values() {
        let help = parse(SHORT);
        assert_eq!(
            entry_row(&help.sections[2].entries[0]),
            [
                "`--action <ACTION>`",
                "How to activate",
                "`switch`",
                "`switch`, `boot`"
            ]
        );
        let long = parse(LONG);
        assert_eq!(
            entry_row(&long.sections[0].entries[0])[3],
            "`bash`: Bash, `zsh`: Zsh"
        );
    }
}
