//! One plaintext line: `path value [timestamp]`, fields separated by spaces or tabs.

use std::borrow::Cow;

use spud_plugin_api::kit::intake::tagged_key;

/// A line taken apart.
#[derive(Debug, PartialEq)]
pub struct Line<'a> {
    /// The key it maps to: the path with characters a key cannot hold made `_`; a tagged
    /// path (`disk.used;dc=a;rack=1`, Graphite 1.1) by the tag rule (`disk.used.dc:a.rack:1`).
    pub key: Cow<'a, str>,
    /// The value exactly as sent.
    pub value: &'a str,
    /// Unix seconds; None for "now" (no timestamp, or `-1` as carbon takes it).
    pub time: Option<u64>,
}

/// Why a line was refused: the kind (one log line per kind), and the detail.
#[derive(Debug, PartialEq)]
pub struct Bad(pub &'static str, pub String);

/// Parses one line (without its line ending). Blank lines are `Ok(None)`.
pub fn line(bytes: &[u8]) -> Result<Option<Line<'_>>, Bad> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Bad("not UTF-8", format!("{:?}", String::from_utf8_lossy(bytes))))?;
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let Some(path) = fields.next() else {
        return Ok(None);
    };
    let value = fields
        .next()
        .ok_or_else(|| Bad("no value", format!("{text:?}")))?;
    if !value.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(Bad("value is not a number", format!("{text:?}")));
    }
    let time = match fields.next() {
        None | Some("-1") | Some("N") => None,
        Some(t) => match t.parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Some(t as u64),
            _ => return Err(Bad("bad timestamp", format!("{text:?}"))),
        },
    };
    if fields.next().is_some() {
        return Err(Bad("more than three fields", format!("{text:?}")));
    }
    Ok(Some(Line {
        key: key(path),
        value,
        time,
    }))
}

fn key(path: &str) -> Cow<'_, str> {
    match path.split_once(';') {
        // Most paths are keys already: no copy.
        None if spud_plugin_api::is_valid_key(path) => Cow::Borrowed(path),
        None => Cow::Owned(spud_plugin_api::key_safe(path)),
        Some((name, tags)) => Cow::Owned(tagged_key(
            name,
            tags.split(';').filter_map(|t| t.split_once('=')),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        let l = line(b"web1.load.shortterm 0.27 1700000000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (&*l.key, l.value, l.time),
            ("web1.load.shortterm", "0.27", Some(1700000000))
        );
        let l = line(b"a.b\t12.30\t-1").unwrap().unwrap();
        assert_eq!((l.value, l.time), ("12.30", None));
        let l = line(b"a  1e6").unwrap().unwrap();
        assert_eq!((l.value, l.time), ("1e6", None));
        assert_eq!(
            line(b"x 1 1700000000.75").unwrap().unwrap().time,
            Some(1700000000)
        );
        assert_eq!(line(b"  ").unwrap(), None);
    }

    #[test]
    fn tagged_and_unsafe_paths() {
        assert_eq!(
            line(b"disk.used;rack=a1;dc=x 5").unwrap().unwrap().key,
            "disk.used.dc:x.rack:a1"
        );
        assert_eq!(line(b"a/b*c 5").unwrap().unwrap().key, "a_b_c");
    }

    #[test]
    fn bad_lines_name_their_kind() {
        assert_eq!(line(b"lonely").unwrap_err().0, "no value");
        assert_eq!(line(b"a abc 1").unwrap_err().0, "value is not a number");
        assert_eq!(line(b"a nan 1").unwrap_err().0, "value is not a number");
        assert_eq!(line(b"a 1 yesterday").unwrap_err().0, "bad timestamp");
        assert_eq!(line(b"a 1 2 3").unwrap_err().0, "more than three fields");
        assert_eq!(line(b"a \xff 1").unwrap_err().0, "not UTF-8");
    }
}
