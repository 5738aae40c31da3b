//! A rule's `keys`: a glob over the whole key. `*` is one dot-separated part (`web*` is a
//! part that starts with `web`), `**` any number of parts and dots; everything else is
//! itself. Each `*` and `**` is a capture, `$1`, `$2`… in the rule's conditions, labels
//! and summary: `keys = "*.mem.available_kb"` with `key("$1.mem.total_kb")`.
//!
//! Rules files once used the protocol's pattern, unanchored and with regular-expression
//! characters; a glob holding such characters is refused with what to write instead.

use std::borrow::Cow;

/// A compiled `keys` glob.
#[derive(Debug, Clone)]
pub struct KeyGlob {
    text: String,
    /// The anchored expression (`^…$`), one group per wildcard.
    source: String,
    regex: regex::Regex,
    wildcards: usize,
}

impl KeyGlob {
    pub fn new(text: &str) -> Result<KeyGlob, String> {
        if let Some(c) = text.chars().find(|c| "^$[](){}|+?\\".contains(*c)) {
            return Err(format!(
                "{c:?} is not part of a keys glob: keys match whole keys, `*` one part, `**` any \
                 parts (`web*.load.1`, `**.load.1`); regular expressions are not read here"
            ));
        }
        if text.is_empty() {
            return Err("empty: name the keys, as `web*.load.1`".into());
        }
        let mut source = String::from("^");
        let mut wildcards = 0;
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("**") {
                source.push_str("(.*)");
                wildcards += 1;
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                source.push_str("([^.]*)");
                wildcards += 1;
                rest = after;
            } else {
                let c = rest.chars().next().expect("not empty");
                source.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        source.push('$');
        let regex = regex::RegexBuilder::new(&source)
            .case_insensitive(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(KeyGlob {
            text: text.to_string(),
            source,
            regex,
            wildcards,
        })
    }

    /// As written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The anchored expression, for a set of all rules' globs.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How many captures a match has.
    pub fn wildcards(&self) -> usize {
        self.wildcards
    }

    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }

    /// What each wildcard matched in `key`, in order (None: no match).
    pub fn captures(&self, key: &str) -> Option<Vec<String>> {
        let found = self.regex.captures(key)?;
        Some(
            found
                .iter()
                .skip(1)
                .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                .collect(),
        )
    }
}

/// `text` with `$1`…`$9` replaced by the captures (a `$` not before a digit stays).
pub fn expand<'a>(text: &'a str, captures: &[String]) -> Cow<'a, str> {
    if !text.contains('$') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match (c, chars.peek().and_then(|(_, d)| d.to_digit(10))) {
            ('$', Some(n)) if n >= 1 => {
                chars.next();
                if let Some(capture) = captures.get(n as usize - 1) {
                    out.push_str(capture);
                }
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The highest `$N` in `text` (0: none).
pub fn highest_capture(text: &str) -> usize {
    let bytes = text.as_bytes();
    bytes
        .windows(2)
        .filter(|w| w[0] == b'$' && w[1].is_ascii_digit())
        .map(|w| usize::from(w[1] - b'0'))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_keys_one_part_per_star_any_parts_per_two() {
        let g = KeyGlob::new("bx.load.1").unwrap();
        assert!(g.is_match("bx.load.1"));
        assert!(!g.is_match("bx.load.15"), "anchored at the end");
        assert!(!g.is_match("xbox.load.1"), "anchored at the start");
        let g = KeyGlob::new("web*.load.1").unwrap();
        assert!(g.is_match("web1.load.1") && g.is_match("WEB2.load.1"));
        assert!(!g.is_match("web1.dc2.load.1"), "`*` stays in one part");
        let g = KeyGlob::new("**.load.1").unwrap();
        assert!(g.is_match("dc2.web1.load.1"));
        assert_eq!(g.captures("dc2.web1.load.1").unwrap(), ["dc2.web1"]);
        let g = KeyGlob::new("*.mem.available_kb").unwrap();
        assert_eq!(g.captures("web3.mem.available_kb").unwrap(), ["web3"]);
        assert_eq!(g.wildcards(), 1);
    }

    #[test]
    fn regular_expressions_are_refused_with_what_to_write() {
        let e = KeyGlob::new("^web[0-9]+\\.load$").unwrap_err();
        assert!(e.contains("`*` one part"), "{e}");
    }

    #[test]
    fn captures_expand_in_text() {
        let caps = vec!["web3".to_string(), "x".to_string()];
        assert_eq!(expand("$1.mem.total_kb", &caps), "web3.mem.total_kb");
        assert_eq!(expand("$2-$1 costs $", &caps), "x-web3 costs $");
        assert_eq!(highest_capture("key(\"$2.a\") + $1"), 2);
    }
}
