//! The little Markdown the reference pages are written in: the generated
//! header, table rows and cells, code spans.

use super::UPDATE_COMMAND;

/// `body` after the line that says the page is generated and how to
/// regenerate it.
pub fn with_header(body: &str) -> String {
    format!(
        "<!-- Generated from the code: do not edit. Regenerate with `{UPDATE_COMMAND}`. -->\n\n{}\n",
        body.trim_end()
    )
}

/// A table: its header row, the separator and one row per entry.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut text = row(&header
        .iter()
        .map(|cell| cell.to_string())
        .collect::<Vec<_>>());
    text.push_str(&row(&header
        .iter()
        .map(|_| "---".to_owned())
        .collect::<Vec<_>>()));
    for cells in rows {
        text.push_str(&row(cells));
    }
    text
}

fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|cell| cell_text(cell)).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// Text that fits in a table cell: on one line, its pipes escaped.
fn cell_text(text: &str) -> String {
    let text = one_line(text).replace('|', "\\|");
    if text.is_empty() {
        " ".to_owned()
    } else {
        text
    }
}

/// Text on one line: lines joined by spaces, paragraphs kept apart by `<br>`.
pub fn one_line(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("<br>")
}

/// `text` as a code span (with enough backticks around it).
pub fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_line_and_escape_pipes() {
        let rows = [vec!["a\nb".to_owned(), "bash|zsh".to_owned()]];
        assert_eq!(
            table(&["Name", "Values"], &rows),
            "| Name | Values |\n| --- | --- |\n| a b | bash\\|zsh |\n"
        );
    }

    #[test]
    fn paragraphs_stay_apart() {
        assert_eq!(one_line("one\ntwo\n\nthree"), "one two<br>three");
    }

    #[test]
    fn code_spans_hold_backticks() {
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("ab"), "`ab`");
    }
}
