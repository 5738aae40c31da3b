//! One line per TOML problem, naming the file and the line: what every config and rules
//! file of the project reports.

use std::path::Path;

/// toml's message names the line and column and shows the line; make it one line,
/// `FILE:LINE: message`.
pub fn describe(e: &toml::de::Error, text: &str, path: &Path) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => format!(
            "{}:{}: {message}",
            path.display(),
            line_of(text, span.start)
        ),
        None => format!("{}: {message}", path.display()),
    }
}

/// The line (from 1) holding byte `at` of `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}
