//! The one place that writes the CLI's own output to stdout (logs go to stderr).

use std::io::Write;

/// Writes `text` and a newline to stdout. A closed pipe (`| head`) is not an error worth
/// reporting, so write errors are ignored.
#[allow(clippy::print_stdout)]
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Rewrites the current terminal line with `text` (a live status line).
#[allow(clippy::print_stdout)]
pub fn progress(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r\x1b[2K{text}");
    let _ = out.flush();
}
