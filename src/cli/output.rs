//! Printing: `--json` writes one JSON document to stdout; otherwise aligned tables and
//! `key: value` blocks for people.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::error::CliError;

/// Writes `text` to stdout. A reader that went away (`herald list | head`) is not an error:
/// the rest of the output is dropped quietly, as other command-line tools do.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::runtime(format!("cannot write the output: {e}"))),
    }
}

/// `print!` through [`emit`]; use inside functions returning `Result<_, CliError>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::emit(&format!($($arg)*))?
    };
}

/// `println!` through [`emit`].
macro_rules! outln {
    () => {
        $crate::cli::output::emit("\n")?
    };
    ($($arg:tt)*) => {
        $crate::cli::output::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};

/// Prints `value` as one pretty JSON document.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::runtime(format!("cannot encode JSON output: {e}")))?;
    emit(&format!("{text}\n"))
}

/// Left-aligned columns separated by two spaces; widths count characters, not bytes. Cells are
/// never cut: a long value widens its column.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k}:{}{}\n", " ".repeat(width - k.len() + 1), printable(v)))
        .collect()
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `text` with every control character written as its escape (`\u{1b}`, `\n`): what the
/// database holds was not necessarily written by herald (a plain-SQL writer can store an
/// error or a key with terminal escape sequences), and a table is printed to a terminal.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["a".to_string(), "ééé".to_string(), "x".to_string()],
            vec!["long-id".to_string(), "b".to_string(), "".to_string()],
        ];
        assert_eq!(
            table(&["ID", "NAME", "LAST"], &rows),
            "ID       NAME  LAST\na        ééé   x\nlong-id  b\n"
        );
    }

    #[test]
    fn field_values_align() {
        assert_eq!(
            fields(&[("id", "1".into()), ("state", "dead".into())]),
            "id:    1\nstate: dead\n"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped_never_sent_to_the_terminal() {
        assert_eq!(printable("plain é"), "plain é");
        assert_eq!(printable("a\u{1b}[2Jb\r\n"), "a\\u{1b}[2Jb\\r\\n");
        let shown = table(&["ERROR"], &[vec!["x\u{1b}]0;pwned\u{7}".into()]]);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        let shown = fields(&[("last_error", "\u{9b}31m".into())]);
        assert_eq!(shown, "last_error: \\u{9b}31m\n");
    }
}
