//! Key patterns, as the original server understood them.
//!
//! `.` is a literal dot, `*` is any run of characters, everything else keeps its regular
//! expression meaning; matching is case-insensitive and unanchored. The regex engine
//! matches in linear time, so no pattern can stall the server.

use std::fmt;

/// A compiled key pattern.
#[derive(Clone)]
pub struct Pattern {
    converted: Vec<u8>,
    regex: regex::bytes::Regex,
}

/// A pattern that is not a valid expression once converted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct PatternError {
    /// One line saying what is wrong with it.
    pub reason: String,
}

impl Pattern {
    /// Converts a glob-like pattern (`memcached.*.curr_items`) and compiles it.
    pub fn new(glob: impl AsRef<[u8]>) -> Result<Pattern, PatternError> {
        let converted = convert(glob.as_ref());
        let source = String::from_utf8_lossy(&converted);
        let regex = regex::bytes::RegexBuilder::new(&source)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| PatternError {
                reason: one_line(&e),
            })?;
        Ok(Pattern { converted, regex })
    }

    /// The expression as the original showed it (`foo.*` shows as `foo\..*`).
    pub fn converted(&self) -> &[u8] {
        &self.converted
    }

    /// Whether `key` matches anywhere.
    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key.as_bytes())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", String::from_utf8_lossy(&self.converted))
    }
}

/// The original's `s/\./\\./g; s/\*/.*/g`.
fn convert(glob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(glob.len() + 8);
    for &b in glob {
        match b {
            b'.' => out.extend_from_slice(b"\\."),
            b'*' => out.extend_from_slice(b".*"),
            _ => out.push(b),
        }
    }
    out
}

/// regex's messages span several lines with a caret diagram; the last line says what is wrong.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid pattern");
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_the_original() {
        assert_eq!(Pattern::new("foo.*").unwrap().converted(), b"foo\\..*");
        assert_eq!(Pattern::new("*").unwrap().converted(), b".*");
    }

    #[test]
    fn matches_unanchored_and_case_insensitive() {
        let p = Pattern::new("foo").unwrap();
        assert!(p.is_match("xFOOy"));
        let p = Pattern::new("a+b").unwrap();
        assert!(p.is_match("aab"));
        let p = Pattern::new("mem.*.items").unwrap();
        assert!(p.is_match("mem.a.items"));
        assert!(!p.is_match("memXaXitems"));
    }

    #[test]
    fn invalid_patterns_say_why_in_one_line() {
        let e = Pattern::new("(*").unwrap_err();
        assert!(!e.reason.contains('\n'), "{}", e.reason);
        assert!(e.reason.contains("unclosed group"), "{}", e.reason);
        assert!(Pattern::new("[").is_err());
    }
}
