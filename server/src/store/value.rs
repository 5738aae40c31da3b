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

/// The most decimals a [`Encoded::Decimal`] carries: `10^22` is the largest power of ten an
/// `f64` holds exactly, which keeps its number exact (see `Encoded::number`).
pub(crate) const MAX_SCALE: u8 = 22;

/// How a value is kept in history: most monitoring values are short decimals, kept as
/// integers; the text of anything else is kept as it came.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Encoded<'a> {
    /// `mantissa / 10^scale`, spelled the plain way: `-` only when negative, no leading
    /// zeros, exactly `scale` decimals (`42`, `512.37`, `0.50`). With decimals, the mantissa
    /// is within ±2^53.
    Decimal { mantissa: i64, scale: u8 },
    /// Text that is exactly `f.to_string()` but too long for a decimal (`0.30000000000000004`).
    Float(f64),
    /// Anything else, verbatim (`1e6`, `007`, `-0`, `up`, bytes that are not UTF-8).
    Text(&'a [u8]),
}

const POW10: [f64; MAX_SCALE as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl<'a> Encoded<'a> {
    pub(crate) fn classify(text: &'a [u8]) -> Encoded<'a> {
        if let Some((mantissa, scale)) = plain_decimal(text) {
            return Encoded::Decimal { mantissa, scale };
        }
        match parse_number(text) {
            Some(f) if is_canonical_float(f, text) => Encoded::Float(f),
            _ => Encoded::Text(text),
        }
    }

    pub(crate) fn number(&self) -> Option<f64> {
        match *self {
            Encoded::Decimal { mantissa, scale: 0 } => Some(mantissa as f64),
            // Both operands are exact (|mantissa| ≤ 2^53, 10^scale ≤ 10^22), so the one
            // rounding of the division gives the f64 nearest the decimal: what parsing the
            // text gives.
            Encoded::Decimal { mantissa, scale } => {
                Some(mantissa as f64 / POW10[usize::from(scale)])
            }
            Encoded::Float(f) => Some(f),
            Encoded::Text(t) => parse_number(t),
        }
    }

    /// Appends the exact text this value was set with.
    pub(crate) fn write_text(&self, out: &mut Vec<u8>) {
        match *self {
            Encoded::Decimal { mantissa, scale } => {
                if mantissa < 0 {
                    out.push(b'-');
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(mantissa.unsigned_abs()).as_bytes();
                let scale = usize::from(scale);
                if scale == 0 {
                    out.extend_from_slice(digits);
                } else if digits.len() > scale {
                    let (int, frac) = digits.split_at(digits.len() - scale);
                    out.extend_from_slice(int);
                    out.push(b'.');
                    out.extend_from_slice(frac);
                } else {
                    out.extend_from_slice(b"0.");
                    out.resize(out.len() + scale - digits.len(), b'0');
                    out.extend_from_slice(digits);
                }
            }
            Encoded::Float(f) => {
                use std::io::Write;
                let _ = write!(out, "{f}");
            }
            Encoded::Text(t) => out.extend_from_slice(t),
        }
    }

    pub(crate) fn to_value(self) -> Value {
        let mut text = Vec::new();
        self.write_text(&mut text);
        Value::from_parts(text, self.number())
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?` as (mantissa, scale), when `Encoded::Decimal` spells it
/// back byte for byte: not `-0`, at most `MAX_SCALE` decimals, the mantissa within i64
/// (within ±2^53 with decimals).
fn plain_decimal(text: &[u8]) -> Option<(i64, u8)> {
    let (negative, body) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 == body.len() => return None, // `5.`
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &b""[..]),
    };
    match int {
        [b'0'] | [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    if frac.len() > usize::from(MAX_SCALE) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &b in int.iter().chain(frac) {
        if !b.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(b - b'0'))?;
    }
    let limit = if frac.is_empty() {
        (i64::MAX as u64) + u64::from(negative)
    } else {
        1 << 53
    };
    if magnitude > limit || (negative && magnitude == 0) {
        return None;
    }
    let mantissa = if negative {
        (magnitude as i64).wrapping_neg()
    } else {
        magnitude as i64
    };
    Some((mantissa, frac.len() as u8))
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

    fn decimal(mantissa: i64, scale: u8) -> Encoded<'static> {
        Encoded::Decimal { mantissa, scale }
    }

    #[test]
    fn plain_decimals_are_stored_as_integers() {
        assert_eq!(roundtrip("0"), decimal(0, 0));
        assert_eq!(roundtrip("42"), decimal(42, 0));
        assert_eq!(roundtrip("-17"), decimal(-17, 0));
        assert_eq!(roundtrip("9223372036854775807"), decimal(i64::MAX, 0));
        assert_eq!(roundtrip("-9223372036854775808"), decimal(i64::MIN, 0));
        assert_eq!(roundtrip("512.37"), decimal(51237, 2));
        assert_eq!(roundtrip("12.30"), decimal(1230, 2));
        assert_eq!(roundtrip("0.00"), decimal(0, 2));
        assert_eq!(roundtrip("-0.005"), decimal(-5, 3));
        assert_eq!(roundtrip("0.0000000000000000000001"), decimal(1, 22));
    }

    #[test]
    fn decimal_numbers_equal_the_parsed_text() {
        for t in [
            "0.1",
            "0.3",
            "-3.25",
            "512.37",
            "9007199254740.992",
            "0.0000000000000000000001",
            "123456.789",
            "99.9",
            "-0.007",
        ] {
            let e = roundtrip(t);
            assert!(matches!(e, Encoded::Decimal { .. }), "{t}");
            assert_eq!(e.number(), Some(t.parse::<f64>().unwrap()), "{t}");
        }
    }

    #[test]
    fn other_spellings_keep_their_text() {
        for t in [
            "007",
            "-00",
            "-0.00",
            "+5",
            "1e3",
            "5.",
            ".5",
            "1.5E-3",
            "9223372036854775808",
            "99999999999999999999",
            "0.00000000000000000000001",
        ] {
            let e = roundtrip(t);
            assert!(matches!(e, Encoded::Text(_)), "{t}: {e:?}");
            assert_eq!(e.number(), Some(t.parse::<f64>().unwrap()), "{t}");
        }
        assert_eq!(
            roundtrip("0.30000000000000004"),
            Encoded::Float(0.30000000000000004)
        );
        assert!(matches!(roundtrip("1.5"), Encoded::Decimal { .. }));
        assert!(matches!(roundtrip("-0"), Encoded::Float(f) if f == 0.0 && f.is_sign_negative()));
    }

    #[test]
    fn text_is_text() {
        for t in [
            "", "abc", "1.2.3", "nan", "inf", "12 ", " 12", "1e", ".", "-", "0x10",
        ] {
            let e = roundtrip(t);
            assert!(matches!(e, Encoded::Text(_)), "{t:?}");
            assert_eq!(e.number(), None, "{t:?}");
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

/// One stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix seconds: given by the setter, or the time it arrived.
    pub time: u64,
    /// The value, exactly as set.
    pub value: Value,
}

impl Sample {
    pub(crate) fn new(time: u64, text: impl Into<Vec<u8>>) -> Sample {
        Sample {
            time,
            value: Value::new(text),
        }
    }
}
