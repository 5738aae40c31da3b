//! One line of InfluxDB line protocol, read without copying:
//! `measurement[,tag=value…] field=value[,field=value…] [timestamp]`.
//!
//! Measurement, tag keys and values, and field keys escape `,`, `=` and space with a
//! backslash; string field values are in double quotes and escape `"` and `\`. Field values
//! are floats (`1`, `-1.5e3`), integers (`1i`), unsigned integers (`1u`), booleans
//! (`t`, `true`, `F`, `FALSE`…) or strings. A name with no escape in it is borrowed from
//! the body as it is; only escaped names are copied.
//!
//! Written here rather than taken from `influxdb-line-protocol` (InfluxData's parser, used
//! as the oracle of this module's property test) because that one parses ~0.9M lines a
//! second on a core by itself, and the whole receiving path must do more on two.

use std::borrow::Cow;

/// A field's value, its text as written where that is exact.
#[derive(Debug, PartialEq)]
pub enum Field<'a> {
    /// A float, as written (`97.5`, `1e6`).
    Float(&'a str),
    /// A signed integer, without its `i`.
    Int(&'a str),
    /// An unsigned integer, without its `u`.
    UInt(&'a str),
    /// A boolean.
    Bool(bool),
    /// A string, unescaped.
    Str(Cow<'a, str>),
}

/// A line taken apart. Reused from line to line, so its vectors keep their room.
#[derive(Debug, Default)]
pub struct Line<'a> {
    /// The measurement.
    pub measurement: Cow<'a, str>,
    /// Tags, in the order written.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields, in the order written.
    pub fields: Vec<(Cow<'a, str>, Field<'a>)>,
    /// The timestamp, in the request's precision.
    pub timestamp: Option<i64>,
}

/// Reads `text` (one line, without its line ending) into `line`.
pub fn parse<'a>(text: &'a str, line: &mut Line<'a>) -> Result<(), String> {
    line.tags.clear();
    line.fields.clear();
    line.timestamp = None;
    let b = text.as_bytes();
    let (measurement, mut at) = name(text, 0, b", ")?;
    if measurement.is_empty() {
        return Err("no measurement".into());
    }
    line.measurement = measurement;
    while b.get(at) == Some(&b',') {
        let (key, next) = name(text, at + 1, b"=, ")?;
        if b.get(next) != Some(&b'=') || key.is_empty() {
            return Err(format!("tag {key:?} has no '=value'"));
        }
        let (value, next) = name(text, next + 1, b", =")?;
        if value.is_empty() || b.get(next) == Some(&b'=') {
            return Err(format!("tag {key:?} has no value, or an unescaped '='"));
        }
        line.tags.push((key, value));
        at = next;
    }
    if b.get(at) != Some(&b' ') {
        return Err("no fields".into());
    }
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    loop {
        let (key, next) = name(text, at, b"=, ")?;
        if b.get(next) != Some(&b'=') || key.is_empty() {
            return Err(format!("field {key:?} has no '=value'"));
        }
        let (value, next) = field_value(text, next + 1)?;
        line.fields.push((key, value));
        at = next;
        match b.get(at) {
            Some(b',') => at += 1,
            _ => break,
        }
    }
    match b.get(at) {
        None => Ok(()),
        Some(b' ') => {
            let rest = text[at..].trim_matches(' ');
            if rest.is_empty() {
                return Ok(());
            }
            line.timestamp = Some(
                rest.parse()
                    .map_err(|_| format!("timestamp {rest:?} is not an integer"))?,
            );
            Ok(())
        }
        Some(_) => Err(format!(
            "unexpected text after the fields: {:?}",
            &text[at..]
        )),
    }
}

/// A name from `start` up to the first unescaped byte of `stops` (or the end): the name and
/// where it stopped. `\` escapes `,`, `=`, space and `\`; before anything else it is itself.
fn name<'a>(text: &'a str, start: usize, stops: &[u8]) -> Result<(Cow<'a, str>, usize), String> {
    let b = text.as_bytes();
    let mut i = start;
    let mut escaped = false;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() && matches!(b[i + 1], b',' | b'=' | b' ' | b'\\') => {
                escaped = true;
                i += 2;
            }
            c if stops.contains(&c) => break,
            b'\n' => return Err("a line break inside a name".into()),
            _ => i += 1,
        }
    }
    let raw = &text[start..i];
    if !escaped {
        return Ok((Cow::Borrowed(raw), i));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if matches!(n, ',' | '=' | ' ' | '\\') {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    Ok((Cow::Owned(out), i))
}

fn field_value(text: &str, start: usize) -> Result<(Field<'_>, usize), String> {
    let b = text.as_bytes();
    if b.get(start) == Some(&b'"') {
        let mut i = start + 1;
        let mut escaped = false;
        while i < b.len() {
            match b[i] {
                b'\\' if i + 1 < b.len() && matches!(b[i + 1], b'"' | b'\\') => {
                    escaped = true;
                    i += 2;
                }
                b'"' => {
                    let raw = &text[start + 1..i];
                    let value = if escaped {
                        Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\"))
                    } else {
                        Cow::Borrowed(raw)
                    };
                    return Ok((Field::Str(value), i + 1));
                }
                _ => i += 1,
            }
        }
        return Err("a string field without its closing quote".into());
    }
    let end = b[start..]
        .iter()
        .position(|&c| c == b',' || c == b' ')
        .map_or(b.len(), |p| start + p);
    let raw = &text[start..end];
    let field = match raw {
        "" => return Err("a field without a value".into()),
        "t" | "T" | "true" | "True" | "TRUE" => Field::Bool(true),
        "f" | "F" | "false" | "False" | "FALSE" => Field::Bool(false),
        _ => {
            if let Some(int) = raw.strip_suffix('i') {
                int.parse::<i64>()
                    .map_err(|_| format!("{raw:?} is not an integer"))?;
                Field::Int(int)
            } else if let Some(uint) = raw.strip_suffix('u') {
                uint.parse::<u64>()
                    .map_err(|_| format!("{raw:?} is not an unsigned integer"))?;
                Field::UInt(uint)
            } else if float(raw) {
                Field::Float(raw)
            } else {
                return Err(format!("{raw:?} is not a number, boolean or string"));
            }
        }
    };
    Ok((field, end))
}

/// A float as line protocol writes them: digits, a sign, a point, an exponent; no `inf` or
/// `NaN`, which `f64`'s parser would take.
fn float(raw: &str) -> bool {
    raw.bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
        && raw.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Line<'_>, String> {
        let mut line = Line::default();
        parse(text, &mut line).map(|()| line)
    }

    #[test]
    fn every_part() {
        let l = one(
            "cpu,host=web1,cpu=cpu0 usage=97.5,n=3i,u=4u,ok=t,msg=\"a, b \\\"q\\\"\" 1700000000",
        )
        .unwrap();
        assert_eq!(l.measurement, "cpu");
        assert_eq!(
            l.tags,
            vec![
                ("host".into(), "web1".into()),
                ("cpu".into(), "cpu0".into())
            ]
        );
        assert_eq!(l.fields[0], ("usage".into(), Field::Float("97.5")));
        assert_eq!(l.fields[1], ("n".into(), Field::Int("3")));
        assert_eq!(l.fields[2], ("u".into(), Field::UInt("4")));
        assert_eq!(l.fields[3], ("ok".into(), Field::Bool(true)));
        assert_eq!(l.fields[4], ("msg".into(), Field::Str("a, b \"q\"".into())));
        assert_eq!(l.timestamp, Some(1700000000));
    }

    #[test]
    fn escapes() {
        let l = one("my\\ m,a\\,b=c\\=d f\\ 1=1").unwrap();
        assert_eq!(
            (&*l.measurement, &*l.tags[0].0, &*l.tags[0].1),
            ("my m", "a,b", "c=d")
        );
        assert_eq!(l.fields[0].0, "f 1");
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "m",
            "m ",
            "m,t v=1",
            "m,t= v=1",
            "m v",
            "m v=",
            "m v=abc",
            "m v=1 x",
            "m v=\"open",
            "m v=1i2",
            "m v=inf",
            "m v=1 1.5",
        ] {
            assert!(one(bad).is_err(), "{bad:?} was taken");
        }
    }

    mod against_influxdata {
        use super::*;
        use influxdb_line_protocol::{parse_lines, FieldValue};
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop::collection::vec(prop_oneof![6 => "[a-z0-9_]", 1 => Just("\\ ".to_string()), 1 => Just("\\,".to_string())], 1..6)
                .prop_map(|v| v.concat())
        }

        fn tag_part() -> impl Strategy<Value = String> {
            prop::collection::vec(prop_oneof![6 => "[a-z0-9_.]", 1 => Just("\\=".to_string()), 1 => Just("\\ ".to_string())], 1..6)
                .prop_map(|v| v.concat())
        }

        fn field_value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| f.to_string()),
                any::<i64>().prop_map(|i| format!("{i}i")),
                any::<u64>().prop_map(|u| format!("{u}u")),
                prop_oneof![Just("t"), Just("false"), Just("TRUE"), Just("F")]
                    .prop_map(str::to_string),
                "[a-z ,=]{0,8}".prop_map(|s| format!("\"{s}\"")),
                Just("\"q\\\"x\\\\y\"".to_string()),
            ]
        }

        fn line() -> impl Strategy<Value = String> {
            (
                name(),
                prop::collection::vec((tag_part(), tag_part()), 0..3),
                prop::collection::vec(("[a-z]{1,4}", field_value()), 1..4),
                prop::option::of(0i64..i64::MAX),
            )
                .prop_map(|(m, tags, fields, ts)| {
                    let mut s = m;
                    for (k, v) in tags {
                        s += &format!(",{k}={v}");
                    }
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    s += &format!(" {}", fields.join(","));
                    if let Some(t) = ts {
                        s += &format!(" {t}");
                    }
                    s
                })
        }

        proptest! {
            #[test]
            fn reads_what_influxdata_reads(text in line()) {
                let theirs = parse_lines(&text).next().unwrap().expect("the oracle takes generated lines");
                let ours = one(&text).expect("we take what the oracle takes");
                prop_assert_eq!(&*ours.measurement, &*theirs.series.measurement);
                let their_tags: Vec<(String, String)> = theirs.series.tag_set.iter().flatten().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let our_tags: Vec<(String, String)> = ours.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                prop_assert_eq!(our_tags, their_tags);
                prop_assert_eq!(ours.fields.len(), theirs.field_set.len());
                for ((ok, ov), (tk, tv)) in ours.fields.iter().zip(&theirs.field_set) {
                    prop_assert_eq!(&**ok, &**tk);
                    match (ov, tv) {
                        (Field::Float(a), FieldValue::F64(b)) => prop_assert_eq!(a.parse::<f64>().unwrap(), *b),
                        (Field::Int(a), FieldValue::I64(b)) => prop_assert_eq!(a.parse::<i64>().unwrap(), *b),
                        (Field::UInt(a), FieldValue::U64(b)) => prop_assert_eq!(a.parse::<u64>().unwrap(), *b),
                        (Field::Bool(a), FieldValue::Boolean(b)) => prop_assert_eq!(a, b),
                        (Field::Str(a), FieldValue::String(b)) => prop_assert_eq!(&**a, &**b),
                        (a, b) => prop_assert!(false, "{a:?} against {b:?}"),
                    }
                }
                prop_assert_eq!(ours.timestamp, theirs.timestamp);
            }

            #[test]
            fn any_text_is_read_or_refused_never_a_panic(text in "[a-z0-9 ,=\"\\\\.ie-]{0,40}") {
                let _ = one(&text);
            }
        }
    }
}
