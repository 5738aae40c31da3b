//! StatsD lines: `name:value|type[|@rate][|#tag:v,tag2]`, several `value|type` after one
//! name (`a:1|c:2|c`), several lines per datagram.

use std::borrow::Cow;

use spud_plugin_api::kit::intake::tagged_key;

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
    pub key: Cow<'a, str>,
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

/// Parses one line into `out` (which may gain several metrics). Blank lines add nothing.
pub fn line<'a>(bytes: &'a [u8], out: &mut Vec<Metric<'a>>) -> Result<(), Bad> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Bad("not UTF-8", String::from_utf8_lossy(bytes).into_owned()))?
        .trim();
    if text.is_empty() {
        return Ok(());
    }
    let bad = |kind| Bad(kind, text.to_string());
    if text.starts_with("_e{") || text.starts_with("_sc|") {
        return Err(bad("DogStatsD events and service checks are not taken"));
    }
    let (name, rest) = text
        .split_once(':')
        .ok_or_else(|| bad("no ':' after the name"))?;
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    let start = out.len();
    // `a:1|c:2|c` is two values of `a`; a `:` inside `|#tag:v` is not a separator, so each
    // piece is cut at the `:` that follows a complete `value|type…`.
    for piece in values(rest) {
        let mut fields = piece.split('|');
        let value = fields.next().unwrap_or("");
        let kind = match fields.next() {
            Some("c") => Kind::Counter,
            Some("g") => Kind::Gauge,
            Some("ms" | "h" | "d") => Kind::Timer,
            Some("s") => Kind::Set,
            Some(_) => {
                out.truncate(start);
                return Err(bad("unknown metric type"));
            }
            None => {
                out.truncate(start);
                return Err(bad("no '|type'"));
            }
        };
        let mut rate = 1.0;
        let mut tags = None;
        for extra in fields {
            if let Some(r) = extra.strip_prefix('@') {
                match r.parse::<f64>() {
                    Ok(r) if r > 0.0 && r <= 1.0 => rate = r,
                    _ => {
                        out.truncate(start);
                        return Err(bad("sample rate not in (0, 1]"));
                    }
                }
            } else if let Some(t) = extra.strip_prefix('#') {
                tags = Some(t);
            }
            // Other DogStatsD fields (`c:` container, `T` timestamp) are let be.
        }
        let (number, delta) = match kind {
            Kind::Set => (0.0, false),
            _ => match value.parse::<f64>() {
                Ok(v) if v.is_finite() => (v, kind == Kind::Gauge && value.starts_with(['+', '-'])),
                _ => {
                    out.truncate(start);
                    return Err(bad("value is not a number"));
                }
            },
        };
        if value.is_empty() {
            out.truncate(start);
            return Err(bad("empty value"));
        }
        let key = match tags {
            // Most names are keys already: borrowed, not copied.
            None if spud_plugin_api::is_valid_key(name) => Cow::Borrowed(name),
            None => Cow::Owned(spud_plugin_api::key_safe(name)),
            Some(tags) => Cow::Owned(tagged_key(
                name,
                tags.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.split_once(':').unwrap_or((t, ""))),
            )),
        };
        out.push(Metric {
            key,
            kind,
            text: value,
            value: number,
            delta,
            rate,
        });
    }
    Ok(())
}

/// `1|c:2|c|@0.5:3|g` → `1|c`, `2|c|@0.5`, `3|g`: a `:` starts a new value only where the
/// text after it looks like `value|type`, so tags' own `:` stay inside their piece.
fn values(rest: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' && i > start && !in_tags(&rest[start..i]) {
            pieces.push(&rest[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&rest[start..]);
    pieces.into_iter()
}

/// Whether `piece` has reached its `|#tags` part (where `:` belongs to a tag).
fn in_tags(piece: &str) -> bool {
    piece.contains("|#")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &'static str) -> Result<Vec<Metric<'static>>, &'static str> {
        let mut out = Vec::new();
        line(text.as_bytes(), &mut out).map_err(|b| b.0)?;
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
