//! Splitting a line the way the original's regular expressions did.

use spud_plugin_api::is_key_byte;

/// Perl's `\s` on bytes (a line holds no `\n`).
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// `^(\w+)\s*(.*)`: the command word and the rest after any blanks. None when the line
/// does not start with a word character.
pub(crate) fn command(line: &[u8]) -> Option<(&str, &[u8])> {
    let word_len = line
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or(line.len());
    if word_len == 0 {
        return None;
    }
    let word = std::str::from_utf8(&line[..word_len]).expect("ASCII");
    let rest = &line[word_len..];
    let blanks = rest.iter().take_while(|&&b| is_space(b)).count();
    Some((word, &rest[blanks..]))
}

/// `^([-\w.:]+)\s+(.+)`: a key, blanks, and a non-empty rest (kept verbatim). As in the
/// original, when only blanks follow the key, the last blank is the value.
pub(crate) fn key_and_rest(args: &[u8]) -> Option<(&str, &[u8])> {
    let key_len = args.iter().take_while(|&&b| is_key_byte(b)).count();
    let rest = &args[key_len..];
    let blanks = rest.iter().take_while(|&&b| is_space(b)).count();
    if key_len == 0 || blanks == 0 {
        return None;
    }
    let value = if blanks < rest.len() {
        &rest[blanks..]
    } else if blanks >= 2 {
        &rest[blanks - 1..]
    } else {
        return None;
    };
    let key = std::str::from_utf8(&args[..key_len]).expect("ASCII");
    Some((key, value))
}

/// Perl's falsehood for the argument string: empty, or exactly `0`.
pub(crate) fn is_missing(args: &[u8]) -> bool {
    args.is_empty() || args == b"0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_word_and_args() {
        assert_eq!(command(b"GET foo "), Some(("GET", &b"foo "[..])));
        assert_eq!(command(b"get*foo"), Some(("get", &b"*foo"[..])));
        assert_eq!(command(b"uptime"), Some(("uptime", &b""[..])));
        assert_eq!(command(b" get foo"), None);
        assert_eq!(command(b"\r"), None);
    }

    #[test]
    fn key_and_value_follow_the_original_regex() {
        assert_eq!(key_and_rest(b"k v"), Some(("k", &b"v"[..])));
        assert_eq!(key_and_rest(b"k   v  w "), Some(("k", &b"v  w "[..])));
        assert_eq!(key_and_rest(b"k  "), Some(("k", &b" "[..])));
        assert_eq!(key_and_rest(b"k\t\t"), Some(("k", &b"\t"[..])));
        assert_eq!(key_and_rest(b"k "), None);
        assert_eq!(key_and_rest(b"k"), None);
        assert_eq!(key_and_rest(b"k/x v"), None);
        assert_eq!(key_and_rest(b" k v"), None);
    }

    #[test]
    fn zero_is_no_argument() {
        assert!(is_missing(b""));
        assert!(is_missing(b"0"));
        assert!(!is_missing(b"00"));
        assert!(!is_missing(b"0 "));
    }

    /// The hand-written splitters against the original's own regular expressions, on
    /// generated lines (bounded run; `PROPTEST_CASES=100000` for a long one). Failures found
    /// are kept in `proptest-regressions/` and replayed first.
    mod against_the_regexes {
        use super::*;
        use proptest::prelude::*;
        use regex::bytes::Regex;

        /// Lines made of the protocol's own pieces, and any byte but a line break.
        fn line() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"get".to_vec()),
                Just(b"set".to_vec()),
                Just(b"sub".to_vec()),
                Just(b" ".to_vec()),
                Just(b"\t".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\x0b".to_vec()),
                Just(b"0".to_vec()),
                "[-A-Za-z0-9_.:]{1,8}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 1..4),
            ];
            proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn command_is_the_word_then_the_rest_after_blanks(line in line()) {
                let re = Regex::new(r"(?s-u)^(\w+)[ \t\r\x0b\x0c]*(.*)").unwrap();
                let expected = re.captures(&line).map(|c| {
                    (std::str::from_utf8(&c[1]).unwrap().to_string(), c[2].to_vec())
                });
                let got = command(&line).map(|(w, rest)| (w.to_string(), rest.to_vec()));
                prop_assert_eq!(got, expected);
            }

            #[test]
            fn key_and_rest_is_the_key_blanks_and_a_non_empty_rest(line in line()) {
                let re = Regex::new(r"(?s-u)^([-\w.:]+)[ \t\r\x0b\x0c]+(.+)").unwrap();
                let expected = re.captures(&line).map(|c| {
                    (std::str::from_utf8(&c[1]).unwrap().to_string(), c[2].to_vec())
                });
                let got = key_and_rest(&line).map(|(k, v)| (k.to_string(), v.to_vec()));
                prop_assert_eq!(got, expected);
            }
        }
    }
}
