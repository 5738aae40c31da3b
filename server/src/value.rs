//! Values: the exact bytes a client set, plus the number they spell, parsed once.
//!
//! Most monitoring values are numbers. A number written the way Rust would print it
//! back (`42`, `-7`, `0.25`) is stored as the number alone and its text regenerated
//! byte for byte on the way out; anything else keeps its text verbatim.

use std::fmt;

/// A stored value: the text exactly as set, and its number when the text is a decimal number.
#[derive(Clone, PartialEq)]
pub struct Value {
    text: Vec<u8>,
    number: Option<f64>,
}

impl Value {
    /// Builds a value from the bytes a client sent, parsing the number once.
    pub fn new(text: impl Into<Vec<u8>>) -> Value {
        let text = text.into();
        let number = parse_number(&text);
        Value { text, number }
    }

    pub(crate) fn from_parts(text: Vec<u8>, number: Option<f64>) -> Value {
        Value { text, number }
    }

    /// The exact bytes that were set.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// The text, with any bytes that are not UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }

    /// The number the text spells, if it is a decimal number (`12`, `-3.5`, `1e6`).
    pub fn number(&self) -> Option<f64> {
        self.number
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.text))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::new(s)
    }
}

/// How a value is kept in history: a canonical number needs no text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Encoded<'a> {
    /// Text that is exactly `i.to_string()`.
    Int(i64),
    /// Text that is exactly `f.to_string()`.
    Float(f64),
    /// Any other decimal number: its text and its value.
    NumText(f64, &'a [u8]),
    /// Not a number.
    Text(&'a [u8]),
}

impl<'a> Encoded<'a> {
    pub(crate) fn classify(text: &'a [u8]) -> Encoded<'a> {
        if let Some(i) = canonical_int(text) {
            return Encoded::Int(i);
        }
        match parse_number(text) {
            Some(f) if is_canonical_float(f, text) => Encoded::Float(f),
            Some(f) => Encoded::NumText(f, text),
            None => Encoded::Text(text),
        }
    }

    pub(crate) fn number(&self) -> Option<f64> {
        match *self {
            Encoded::Int(i) => Some(i as f64),
            Encoded::Float(f) | Encoded::NumText(f, _) => Some(f),
            Encoded::Text(_) => None,
        }
    }

    /// Appends the exact text this value was set with.
    pub(crate) fn write_text(&self, out: &mut Vec<u8>) {
        match *self {
            Encoded::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Encoded::Float(f) => {
                use std::io::Write;
                let _ = write!(out, "{f}");
            }
            Encoded::NumText(_, t) | Encoded::Text(t) => out.extend_from_slice(t),
        }
    }

    pub(crate) fn to_value(self) -> Value {
        let mut text = Vec::new();
        self.write_text(&mut text);
        Value::from_parts(text, self.number())
    }
}

/// `0`, or an optional `-` and digits without a leading zero, within i64.
fn canonical_int(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let ok = match digits {
        [] => false,
        [b'0'] => text.len() == 1, // "-0" is not how 0 prints
        [b'1'..=b'9', rest @ ..] => rest.len() < 19 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !ok {
        return None;
    }
    // At most 19 digits: parse cannot fail except on i64 overflow.
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A decimal number: `[+-]digits[.digits][e[+-]digits]`, or starting with the dot.
/// Words such as `inf` and `NaN` are text, not numbers.
pub(crate) fn parse_number(text: &[u8]) -> Option<f64> {
    let mut i = 0;
    let at = |i: usize| text.get(i).copied();
    if matches!(at(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while matches!(at(i), Some(b'0'..=b'9')) {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if at(i) == Some(b'.') {
        i += 1;
        let frac_start = i;
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return None;
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != text.len() {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn is_canonical_float(f: f64, text: &[u8]) -> bool {
    use std::io::Write;
    // Long texts print differently anyway; keep the check cheap.
    if text.len() > 24 || !f.is_finite() {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if write!(cursor, "{f}").is_err() {
        return false;
    }
    let n = cursor.position() as usize;
    &buf[..n] == text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> Encoded<'_> {
        let e = Encoded::classify(text.as_bytes());
        let mut out = Vec::new();
        e.write_text(&mut out);
        assert_eq!(out, text.as_bytes(), "text of {text:?} must survive");
        e
    }

    #[test]
    fn canonical_integers_are_stored_as_numbers() {
        assert_eq!(roundtrip("0"), Encoded::Int(0));
        assert_eq!(roundtrip("42"), Encoded::Int(42));
        assert_eq!(roundtrip("-17"), Encoded::Int(-17));
        assert_eq!(roundtrip("9223372036854775807"), Encoded::Int(i64::MAX));
        assert_eq!(roundtrip("-9223372036854775808"), Encoded::Int(i64::MIN));
    }

    #[test]
    fn other_spellings_keep_their_text() {
        assert!(matches!(roundtrip("007"), Encoded::NumText(f, _) if f == 7.0));
        assert!(matches!(roundtrip("-00"), Encoded::NumText(..)));
        assert!(matches!(roundtrip("+5"), Encoded::NumText(f, _) if f == 5.0));
        assert!(matches!(roundtrip("1.50"), Encoded::NumText(f, _) if f == 1.5));
        assert!(matches!(roundtrip("1e3"), Encoded::NumText(f, _) if f == 1000.0));
        assert!(matches!(
            roundtrip("9223372036854775808"),
            Encoded::NumText(..)
        ));
        assert_eq!(roundtrip("0.25"), Encoded::Float(0.25));
        assert_eq!(roundtrip("-3.5"), Encoded::Float(-3.5));
    }

    #[test]
    fn text_is_text() {
        for t in [
            "", "abc", "1.2.3", "nan", "inf", "12 ", " 12", "1e", ".", "-", "0x10",
        ] {
            assert!(matches!(roundtrip(t), Encoded::Text(_)), "{t:?}");
        }
        assert!(matches!(
            Encoded::classify(b"\xff\xfe"),
            Encoded::Text(b"\xff\xfe")
        ));
    }

    #[test]
    fn value_parses_number_once() {
        assert_eq!(Value::new("12.5").number(), Some(12.5));
        assert_eq!(Value::new(".5").number(), Some(0.5));
        assert_eq!(Value::new("5.").number(), Some(5.0));
        assert_eq!(Value::new("up").number(), None);
    }
}
