//! A body of line protocol to samples: which key, value and time each field becomes.
//!
//! The key of a field is `<measurement>[.<tag>:<value>…].<field>`, tags in name order (the
//! tag rule of `spud_plugin_api::kit::intake::tagged_key`), every character a key cannot
//! hold made `_`: `cpu,host=web1,cpu=cpu0 usage_idle=97.5` is
//! `cpu.cpu:cpu0.host:web1.usage_idle`. Floats and integers (`1i`, `1u`) are stored as
//! numbers, booleans as 1 or 0, strings as their text.

use influxdb_line_protocol::{parse_lines, FieldValue};
use spud_plugin_api::kit::intake::tagged_key;

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

/// One field's sample.
#[derive(Debug, PartialEq)]
pub struct Sample {
    /// Its key.
    pub key: String,
    /// Its value's text.
    pub value: String,
    /// Unix seconds; None for the time of arrival.
    pub time: Option<u64>,
}

/// A refused line: its number (from 1) and why.
#[derive(Debug, PartialEq)]
pub struct Refused {
    /// The line's number in the body.
    pub line: usize,
    /// The parser's reason.
    pub why: String,
}

/// Every sample of `body`, in order, and the lines refused.
pub fn samples(body: &str, precision: Precision, mut sample: impl FnMut(Sample)) -> Vec<Refused> {
    let mut refused = Vec::new();
    for (i, parsed) in parse_lines(body).enumerate() {
        let line = match parsed {
            Ok(line) => line,
            Err(e) => {
                refused.push(Refused {
                    line: i + 1,
                    why: e.to_string(),
                });
                continue;
            }
        };
        let time = match line.timestamp {
            None => None,
            Some(t) => match precision.seconds(t) {
                Some(s) => Some(s),
                None => {
                    refused.push(Refused {
                        line: i + 1,
                        why: format!("timestamp {t} is before 1970 or out of range"),
                    });
                    continue;
                }
            },
        };
        let tags = line.series.tag_set.as_deref().unwrap_or(&[]);
        let base = tagged_key(
            &line.series.measurement,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        for (field, value) in &line.field_set {
            let value = match value {
                FieldValue::F64(v) => v.to_string(),
                FieldValue::I64(v) => v.to_string(),
                FieldValue::U64(v) => v.to_string(),
                FieldValue::Boolean(v) => u8::from(*v).to_string(),
                FieldValue::String(v) => v.replace(['\r', '\n'], " "),
            };
            sample(Sample {
                key: format!("{base}.{}", spud_plugin_api::key_safe(field)),
                value,
                time,
            });
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &str, p: Precision) -> (Vec<Sample>, Vec<Refused>) {
        let mut out = Vec::new();
        let refused = samples(body, p, |s| out.push(s));
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
}
