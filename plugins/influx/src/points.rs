//! A body of line protocol to samples: which key, value and time each field becomes.
//!
//! The key of a field is `<measurement>[.<tag>:<value>…].<field>`, tags in name order (the
//! tag rule of `spud_plugin_api::kit::intake::tagged_key`), every character a key cannot
//! hold made `_`: `cpu,host=web1,cpu=cpu0 usage_idle=97.5` is
//! `cpu.cpu:cpu0.host:web1.usage_idle`. Floats are stored as written (`97.50` stays
//! `97.50`), integers (`1i`, `1u`) without their suffix, booleans as 1 or 0, strings as
//! their text (line breaks made spaces).

use std::borrow::Cow;

use crate::line::{Field, Line};

/// The unit of the timestamps, from `precision=`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Nanos,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
    /// Minutes (v1 only).
    Minutes,
    /// Hours (v1 only).
    Hours,
}

impl Precision {
    /// The precision a request names: v1's `n u ms s m h` and v2's `ns us ms s`.
    pub fn parse(text: Option<&str>) -> Result<Precision, String> {
        Ok(match text.unwrap_or("ns") {
            "n" | "ns" => Precision::Nanos,
            "u" | "us" | "µ" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => {
                return Err(format!(
                    "precision {other:?} is not one of ns, us, ms, s, m, h"
                ))
            }
        })
    }

    /// A timestamp in this unit as Unix seconds.
    fn seconds(self, t: i64) -> Option<u64> {
        let s = match self {
            Precision::Nanos => t.div_euclid(1_000_000_000),
            Precision::Micros => t.div_euclid(1_000_000),
            Precision::Millis => t.div_euclid(1_000),
            Precision::Seconds => t,
            Precision::Minutes => t.checked_mul(60)?,
            Precision::Hours => t.checked_mul(3600)?,
        };
        u64::try_from(s).ok()
    }
}

/// A refused line: its number (from 1) and why.
#[derive(Debug, PartialEq)]
pub struct Refused {
    /// The line's number in the body.
    pub line: usize,
    /// Why.
    pub why: String,
}

/// Calls `sample(key, value, time)` for every field of `body`, in order (time in Unix
/// seconds, None for the time of arrival); returns the lines refused.
pub fn samples(
    body: &str,
    precision: Precision,
    mut sample: impl FnMut(&str, &str, Option<u64>),
) -> Vec<Refused> {
    let mut refused = Vec::new();
    let mut line = Line::default();
    let mut key = String::new();
    let mut order: Vec<usize> = Vec::new();
    for (i, text) in body.split('\n').enumerate() {
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let mut refuse = |why: String| refused.push(Refused { line: i + 1, why });
        if let Err(why) = crate::line::parse(text, &mut line) {
            refuse(why);
            continue;
        }
        let time = match line.timestamp {
            None => None,
            Some(t) => match precision.seconds(t) {
                Some(s) => Some(s),
                None => {
                    refuse(format!("timestamp {t} is before 1970 or out of range"));
                    continue;
                }
            },
        };
        // The key up to the field: the tag rule, written into one buffer for the line.
        key.clear();
        push_safe(&mut key, &line.measurement);
        order.clear();
        order.extend(0..line.tags.len());
        order.sort_by(|&a, &b| line.tags[a].cmp(&line.tags[b]));
        for &t in &order {
            let (tag, value) = &line.tags[t];
            key.push('.');
            push_safe(&mut key, tag);
            key.push(':');
            push_safe(&mut key, value);
        }
        let base = key.len();
        for (field, value) in &line.fields {
            key.truncate(base);
            key.push('.');
            push_safe(&mut key, field);
            let text: Cow<'_, str> = match value {
                Field::Float(v) | Field::Int(v) | Field::UInt(v) => Cow::Borrowed(v),
                Field::Bool(true) => Cow::Borrowed("1"),
                Field::Bool(false) => Cow::Borrowed("0"),
                Field::Str(v) if v.contains(['\r', '\n']) => {
                    Cow::Owned(v.replace(['\r', '\n'], " "))
                }
                Field::Str(v) => Cow::Borrowed(v),
            };
            sample(&key, &text, time);
        }
    }
    refused
}

/// Appends `text` made fit for a key (see `spud_plugin_api::key_safe`), copying nothing
/// extra when it is fit already.
fn push_safe(key: &mut String, text: &str) {
    if spud_plugin_api::is_valid_key(text) {
        key.push_str(text);
    } else {
        key.push_str(&spud_plugin_api::key_safe(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample {
        key: String,
        value: String,
        time: Option<u64>,
    }

    fn all(body: &str, p: Precision) -> (Vec<Sample>, Vec<Refused>) {
        let mut out = Vec::new();
        let refused = samples(body, p, |key, value, time| {
            out.push(Sample {
                key: key.to_string(),
                value: value.to_string(),
                time,
            })
        });
        (out, refused)
    }

    #[test]
    fn fields_tags_and_times() {
        let (s, r) = all(
            "cpu,host=web1,cpu=cpu0 usage_idle=97.5,n=3i,ok=true,msg=\"a b\" 1700000000123456789\n",
            Precision::Nanos,
        );
        assert!(r.is_empty());
        let got: Vec<(&str, &str, Option<u64>)> = s
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str(), s.time))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "cpu.cpu:cpu0.host:web1.usage_idle",
                    "97.5",
                    Some(1700000000)
                ),
                ("cpu.cpu:cpu0.host:web1.n", "3", Some(1700000000)),
                ("cpu.cpu:cpu0.host:web1.ok", "1", Some(1700000000)),
                ("cpu.cpu:cpu0.host:web1.msg", "a b", Some(1700000000)),
            ]
        );
    }

    #[test]
    fn precisions() {
        for (p, t) in [
            (Precision::Seconds, "1700000000"),
            (Precision::Millis, "1700000000999"),
            (Precision::Micros, "1700000000000001"),
        ] {
            let (s, _) = all(&format!("m v=1 {t}"), p);
            assert_eq!(s[0].time, Some(1700000000), "{p:?}");
        }
        let (s, _) = all("m v=1", Precision::Nanos);
        assert_eq!(s[0].time, None);
        assert!(Precision::parse(Some("fortnight")).is_err());
        assert_eq!(Precision::parse(Some("u")), Ok(Precision::Micros));
    }

    #[test]
    fn bad_lines_are_refused_by_number_and_the_rest_kept() {
        let (s, r) = all(
            "good v=1\nbad line\nalso v=2i\nneg v=1 -5\n",
            Precision::Seconds,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(r.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4]);
    }

    #[test]
    fn tags_in_name_order_and_unsafe_characters() {
        let (s, r) = all("m\\ x,z=1,a=b/c f\\ g=2.50", Precision::Nanos);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(
            (s[0].key.as_str(), s[0].value.as_str()),
            ("m_x.a:b_c.z:1.f_g", "2.50")
        );
    }
}
