//! Printing strings that came from MAAS without letting them forge log lines.
//!
//! A hostname, zone, tag or error body is whatever someone typed into MAAS (or whatever
//! a hostile region sends). In the text log format a `\n` in such a value starts a new
//! line that looks like one of ours (`2099-01-01T00:00:00Z ERROR ...`), and terminal
//! escapes or bidirectional overrides can hide or reorder text. [`Escaped`] prints such
//! a value with every control and invisible formatting character written as a Rust
//! escape (`\n`, `\u{1b}`, `\u{202e}`), and everything else as it is, so a plain
//! hostname prints unchanged. JSON logs are already safe: their encoder escapes.

use std::fmt;

/// Displays a MAAS-supplied string with control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Characters that change how a line is read rather than what it says.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width spaces, LRM/RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if needs_escape(c) {
                f.write_str(&s[start..i])?;
                match c {
                    '\n' | '\r' | '\t' | '\0' => write!(f, "{}", c.escape_debug())?,
                    _ => write!(f, "{}", c.escape_unicode())?,
                }
                start = i + c.len_utf8();
            }
        }
        f.write_str(&s[start..])
    }
}

/// An owned copy of `s` with control characters escaped (for stored error texts).
pub fn escape(s: &str) -> String {
    if s.chars().any(needs_escape) {
        Escaped(s).to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged_and_controls_are_escaped() {
        assert_eq!(Escaped("node-01.maas").to_string(), "node-01.maas");
        assert_eq!(Escaped("héllo wörld").to_string(), "héllo wörld");
        assert_eq!(
            Escaped("a\n2099-01-01T00:00:00Z ERROR forged").to_string(),
            "a\\n2099-01-01T00:00:00Z ERROR forged"
        );
        assert_eq!(Escaped("x\r\ty").to_string(), "x\\r\\ty");
        assert_eq!(Escaped("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(Escaped("ab\u{202e}cd").to_string(), "ab\\u{202e}cd");
        assert_eq!(escape("plain"), "plain");
        assert!(!escape("a\u{85}b\u{2028}c").contains(['\u{85}', '\u{2028}']));
    }
}
