//! Log output set-up shared by `maas-flow` and `maas-sim`.
//!
//! Colour codes belong on a person's terminal only: written to a file, a pipe, journald
//! or `docker logs` they are noise that breaks grep. So colour is on only when stderr
//! (where logs go) is a terminal and `NO_COLOR` (<https://no-color.org>) is unset or empty.

#![warn(missing_docs)]

use std::io::IsTerminal;

/// Whether log lines on stderr may carry ANSI colour codes.
pub fn colour_stderr() -> bool {
    colour_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The rule, apart from the process: a terminal, and `NO_COLOR` absent or empty.
pub fn colour_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (coloured on a terminal without `NO_COLOR`).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Install the global subscriber: `filter` must already be validated
/// ([`crate::config::log_filter`]); an invalid one falls back to `info`.
pub fn init(filter: &str, format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_stderr())
        .with_writer(std::io::stderr);
    match format {
        Format::Json => b.json().flatten_event(true).with_current_span(true).init(),
        Format::Text => b.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }
}
