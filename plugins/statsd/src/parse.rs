//! StatsD lines: `name:value|type[|@rate][|#tag:v,tag2]`, several `value|type` after one
//! name (`a:1|c:2|c`), several lines per datagram. Parsing allocates nothing: a metric's
//! key borrows the line, or a buffer of the caller's when tags or unsafe characters make
//! it differ from the name.

use spud_plugin_api::kit::intake::push_tagged_key;

/// The kinds of metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `c`: added up over the interval.
    Counter,
    /// `g`: the last value; `+n`/`-n` move it.
    Gauge,
    /// `ms`, `h`, `d`: every value kept for the interval's statistics.
    Timer,
    /// `s`: distinct values counted.
    Set,
}

/// One metric of a line.
#[derive(Debug, PartialEq)]
pub struct Metric<'a> {
    /// The key: the name made safe, DogStatsD tags added by the tag rule.
    pub key: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// The value's text (a set's member; a number otherwise).
    pub text: &'a str,
    /// The value as a number (0 for sets).
    pub value: f64,
    /// A gauge's `+`/`-`: move it rather than set it.
    pub delta: bool,
    /// `@rate`: 1 unless the client sampled.
    pub rate: f64,
}

/// Why a line was refused: the kind of problem (one log line per kind) and the line.
#[derive(Debug, PartialEq)]
pub struct Bad(pub &'static str, pub String);

/// Parses one line, giving each of its metrics to `each` (a line may hold several; a line
/// with one bad value gives none). `key` is scratch space for keys built from the name.
/// Blank lines give nothing.
pub fn line(bytes: &[u8], key: &mut String, each: impl FnMut(Metric<'_>)) -> Result<(), Bad> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Bad("not UTF-8", String::from_utf8_lossy(bytes).into_owned()))?;
    text_line(text, key, each)
}

/// [`line`] for text already known to be UTF-8 (a whole datagram is checked at once).
pub fn text_line(
    text: &str,
    key: &mut String,
    mut each: impl FnMut(Metric<'_>),
) -> Result<(), Bad> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let bad = |kind| Bad(kind, text.to_string());
    if text.starts_with("_e{") || text.starts_with("_sc|") {
        return Err(bad("DogStatsD events and service checks are not taken"));
    }
    let colon = text
        .bytes()
        .position(|b| b == b':')
        .ok_or_else(|| bad("no ':' after the name"))?;
    let (name, rest) = (&text[..colon], &text[colon + 1..]);
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    // `a:1|c:2|c` is taken whole or not at all: its pieces are checked before any is given.
    if Pieces::of(rest).nth(1).is_some() {
        for piece in Pieces::of(rest) {
            Value::of(piece).map_err(bad)?;
        }
    }
    let name_is_key = spud_plugin_api::is_valid_key(name);
    for piece in Pieces::of(rest) {
        let v = Value::of(piece).map_err(bad)?;
        let key: &str = match v.tags {
            // Most names are keys already: borrowed, not copied.
            None if name_is_key => name,
            None => {
                key.clear();
                spud_plugin_api::push_key_safe(key, name);
                key
            }
            Some(tags) => {
                key.clear();
                push_tagged_key(
                    key,
                    name,
                    tags.split(',')
                        .filter(|t| !t.is_empty())
                        .map(|t| t.split_once(':').unwrap_or((t, ""))),
                );
                key
            }
        };
        each(Metric {
            key,
            kind: v.kind,
            text: v.text,
            value: v.value,
            delta: v.delta,
            rate: v.rate,
        });
    }
    Ok(())
}

/// One `value|type[|@rate][|#tags]` piece.
struct Value<'a> {
    kind: Kind,
    text: &'a str,
    value: f64,
    delta: bool,
    rate: f64,
    tags: Option<&'a str>,
}

impl<'a> Value<'a> {
    fn of(piece: &'a str) -> Result<Value<'a>, &'static str> {
        let mut fields = Fields(Some(piece));
        let text = fields.next().unwrap_or("");
        // Matched as bytes: a type is one or two of them.
        let kind = match fields.next().map(str::as_bytes) {
            Some(b"c") => Kind::Counter,
            Some(b"g") => Kind::Gauge,
            Some(b"ms" | b"h" | b"d") => Kind::Timer,
            Some(b"s") => Kind::Set,
            Some(_) => return Err("unknown metric type"),
            None => return Err("no '|type'"),
        };
        let (mut rate, mut tags) = (1.0, None);
        for extra in fields {
            match extra.as_bytes().first() {
                Some(b'@') => match extra[1..].parse::<f64>() {
                    Ok(r) if r > 0.0 && r <= 1.0 => rate = r,
                    _ => return Err("sample rate not in (0, 1]"),
                },
                Some(b'#') => tags = Some(&extra[1..]),
                // Other DogStatsD fields (`c:` container, `T` timestamp) are let be.
                _ => {}
            }
        }
        if text.is_empty() {
            return Err("empty value");
        }
        let (value, delta) = match kind {
            Kind::Set => (0.0, false),
            _ => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => (v, kind == Kind::Gauge && text.starts_with(['+', '-'])),
                _ => return Err("value is not a number"),
            },
        };
        Ok(Value {
            kind,
            text,
            value,
            delta,
            rate,
            tags,
        })
    }
}

/// The `|`-separated fields of a piece, found byte by byte (they are a few bytes long).
struct Fields<'a>(Option<&'a str>);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0.take()?;
        match rest.bytes().position(|b| b == b'|') {
            Some(i) => {
                self.0 = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => Some(rest),
        }
    }
}

/// `1|c:2|c|@0.5:3|g` → `1|c`, `2|c|@0.5`, `3|g`: a `:` starts a new value only where the
/// text before it has not reached its `|#tags` (where `:` belongs to a tag).
struct Pieces<'a>(Option<&'a str>);

impl<'a> Pieces<'a> {
    fn of(rest: &'a str) -> Pieces<'a> {
        Pieces(Some(rest))
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0.take()?;
        let bytes = rest.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'#' if i > 0 && bytes[i - 1] == b'|' => break,
                b':' if i > 0 => {
                    self.0 = Some(&rest[i + 1..]);
                    return Some(&rest[..i]);
                }
                _ => {}
            }
        }
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `line` gives, with keys owned (the test's view of a metric).
    #[derive(Debug, PartialEq)]
    struct Owned {
        key: String,
        kind: Kind,
        text: String,
        value: f64,
        delta: bool,
        rate: f64,
    }

    fn parse(text: &'static str) -> Result<Vec<Owned>, &'static str> {
        let (mut out, mut key) = (Vec::new(), String::new());
        line(text.as_bytes(), &mut key, |m| {
            out.push(Owned {
                key: m.key.to_string(),
                kind: m.kind,
                text: m.text.to_string(),
                value: m.value,
                delta: m.delta,
                rate: m.rate,
            })
        })
        .map_err(|b| b.0)?;
        Ok(out)
    }

    #[test]
    fn every_kind() {
        assert_eq!(parse("hits:1|c").unwrap()[0].kind, Kind::Counter);
        assert_eq!(parse("hits:3|c|@0.1").unwrap()[0].rate, 0.1);
        assert!(parse("temp:-4|g").unwrap()[0].delta);
        assert!(!parse("temp:4|g").unwrap()[0].delta);
        assert_eq!(parse("t:320|ms").unwrap()[0].kind, Kind::Timer);
        assert_eq!(parse("t:320|h").unwrap()[0].kind, Kind::Timer);
        assert_eq!(parse("u:alice|s").unwrap()[0].text, "alice");
    }

    #[test]
    fn several_values_and_tags() {
        let m = parse("a:1|c:2|c|@0.5").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].value, m[1].rate), (2.0, 0.5));
        let m = parse("req:5|ms|#route:/a,env:prod,canary").unwrap();
        assert_eq!(m[0].key, "req.canary.env:prod.route:_a");
        let m = parse("req:5|c|@0.5|#b:2,a:1").unwrap();
        assert_eq!((&*m[0].key, m[0].rate), ("req.a:1.b:2", 0.5));
    }

    #[test]
    fn bad_lines_name_their_kind() {
        assert_eq!(parse("nocolon"), Err("no ':' after the name"));
        assert_eq!(parse("a:1|x"), Err("unknown metric type"));
        assert_eq!(parse("a:1"), Err("no '|type'"));
        assert_eq!(parse("a:one|c"), Err("value is not a number"));
        assert_eq!(parse("a:1|c|@2"), Err("sample rate not in (0, 1]"));
        assert_eq!(parse(":1|c"), Err("empty name"));
        assert_eq!(
            parse("_e{5,4}:title|text"),
            Err("DogStatsD events and service checks are not taken")
        );
        assert_eq!(parse("a:1|c:zz|c"), Err("value is not a number"));
        assert_eq!(parse("   "), Ok(vec![]));
    }
}
