//! The output of a Nagios plugin, as the Monitoring Plugins development guidelines define it:
//!
//! ```text
//! TEXT OUTPUT | OPTIONAL PERFDATA
//! LONG TEXT LINE 1
//! LONG TEXT LINE N | PERFDATA LINE 2
//! PERFDATA LINE 3
//! ```
//!
//! Perfdata items are `'label'=value[UOM];[warn];[crit];[min];[max]`, space-separated; a
//! label with spaces is quoted (`''` is a quote inside it). Units are scaled to base units
//! (`ms`, `us` → s; `KB`, `MB`, `GB`, `TB` → B, by 1024), `%` and `c` are kept. Thresholds
//! are ranges: `10` (alert outside 0..10), `10:` (below 10), `~:10` (above 10), `10:20`
//! (outside), `@10:20` (inside).

/// A plugin's output, taken apart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    /// The first line's text.
    pub text: String,
    /// The lines after it, without their perfdata.
    pub long_text: Vec<String>,
    pub perfdata: Vec<Perf>,
    /// Items that could not be read, as written.
    pub bad: Vec<String>,
}

/// One perfdata item, scaled to base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    /// None for `U` (the plugin could not determine it).
    pub value: Option<f64>,
    /// The unit after scaling: `s`, `B`, `%`, `c`, or none.
    pub unit: String,
    pub warn: Option<Range>,
    pub crit: Option<Range>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// A threshold range: a value alerts when outside `[start, end]` (or inside, with `@`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub start: f64,
    pub end: f64,
    pub inside: bool,
}

impl Range {
    /// `[@][start:][end]`, `~` for negative infinity, an empty end for positive infinity.
    pub fn parse(text: &str, scale: f64) -> Option<Range> {
        let (inside, text) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let number = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v * scale)
        };
        let (start, end) = match text.split_once(':') {
            None => (0.0, number(text)?),
            Some((start, end)) => {
                let start = if start == "~" {
                    f64::NEG_INFINITY
                } else if start.is_empty() {
                    0.0
                } else {
                    number(start)?
                };
                let end = if end.is_empty() {
                    f64::INFINITY
                } else {
                    number(end)?
                };
                (start, end)
            }
        };
        (start <= end).then_some(Range { start, end, inside })
    }

    /// Whether `value` should raise an alert.
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

impl std::fmt::Display for Range {
    /// The canonical form, in base units: `@`, `~:` or `start:`, then the end.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        if self.start == f64::NEG_INFINITY {
            f.write_str("~:")?;
        } else if self.start != 0.0 {
            write!(f, "{}:", self.start)?;
        }
        if self.end != f64::INFINITY {
            write!(f, "{}", self.end)?;
        }
        Ok(())
    }
}

/// Takes a plugin's stdout apart.
pub fn parse(stdout: &str) -> Output {
    let mut out = Output::default();
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (text, perf) = first.split_once('|').unwrap_or((first, ""));
    out.text = text.trim().to_string();
    items(perf, &mut out);
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            items(line, &mut out);
        } else if let Some((text, perf)) = line.split_once('|') {
            out.long_text.push(text.trim_end().to_string());
            items(perf, &mut out);
            in_perf = true;
        } else {
            out.long_text.push(line.to_string());
        }
    }
    out
}

/// Reads the space-separated items of `text` into `out`.
fn items(text: &str, out: &mut Output) {
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (item, after) = split_item(rest);
        match item_of(item) {
            Some(p) => out.perfdata.push(p),
            None => out.bad.push(item.to_string()),
        }
        rest = after.trim_start();
    }
}

/// The first item of `text` (a quoted label may hold spaces) and what follows it.
fn split_item(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&text[..i], &text[i..]),
            _ => {}
        }
    }
    (text, "")
}

fn item_of(item: &str) -> Option<Perf> {
    let (label, data) = item.rsplit_once('=')?;
    let label = match label.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
        Some(quoted) => quoted.replace("''", "'"),
        None => label.to_string(),
    };
    if label.is_empty() {
        return None;
    }
    let mut fields = data.split(';');
    let value_text = fields.next()?;
    let split = value_text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value_text.len());
    let (number, unit) = value_text.split_at(split);
    let (scale, unit) = match unit {
        "" => (1.0, ""),
        "s" => (1.0, "s"),
        "ms" => (1e-3, "s"),
        "us" => (1e-6, "s"),
        "B" => (1.0, "B"),
        "KB" => (1024.0, "B"),
        "MB" => (1024.0 * 1024.0, "B"),
        "GB" => (1024.0 * 1024.0 * 1024.0, "B"),
        "TB" => (1024.0_f64.powi(4), "B"),
        "%" => (1.0, "%"),
        "c" => (1.0, "c"),
        "U" if number.is_empty() => (1.0, ""),
        _ => return None,
    };
    let value = if value_text == "U" {
        None
    } else {
        Some(number.parse::<f64>().ok().filter(|v| v.is_finite())? * scale)
    };
    let range = |t: Option<&str>| -> Option<Option<Range>> {
        match t.map(str::trim) {
            None | Some("") => Some(None),
            Some(t) => Range::parse(t, scale).map(Some),
        }
    };
    let bound = |t: Option<&str>| -> Option<Option<f64>> {
        match t.map(str::trim) {
            None | Some("") => Some(None),
            Some(t) => t
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| Some(v * scale)),
        }
    };
    Some(Perf {
        label,
        value,
        unit: unit.to_string(),
        warn: range(fields.next())?,
        crit: range(fields.next())?,
        min: bound(fields.next())?,
        max: bound(fields.next())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guidelines_examples() {
        let out = parse(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
             / 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n\
             /var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414 \n\
             /var/log=818MB;970;975;0;980\n",
        );
        assert_eq!(out.text, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(out.long_text.len(), 4);
        let labels: Vec<&str> = out.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["/", "/boot", "/home", "/var/log"]);
        let root = &out.perfdata[0];
        assert_eq!(root.value, Some(2643.0 * 1048576.0));
        assert_eq!(root.unit, "B");
        assert_eq!(
            root.warn,
            Some(Range {
                start: 0.0,
                end: 5948.0 * 1048576.0,
                inside: false
            })
        );
        assert_eq!(root.max, Some(5968.0 * 1048576.0));
        assert!(out.bad.is_empty());
    }

    #[test]
    fn quoted_labels_units_u_and_bad_items() {
        let out =
            parse("OK | 'in use'=5% time=250ms;1;2 'it''s'=3c u=U;;;0 bad=x1 =3 load1=0.5;5;10;0;");
        let p = &out.perfdata;
        assert_eq!(
            (p[0].label.as_str(), p[0].value, p[0].unit.as_str()),
            ("in use", Some(5.0), "%")
        );
        assert_eq!(
            (p[1].value, p[1].warn.unwrap().end, p[1].crit.unwrap().end),
            (Some(0.25), 1e-3, 2e-3)
        );
        assert_eq!((p[2].label.as_str(), p[2].unit.as_str()), ("it's", "c"));
        assert_eq!((p[3].value, p[3].min), (None, Some(0.0)));
        assert_eq!(p[4].label, "load1");
        assert_eq!(out.bad, ["bad=x1", "=3"]);
    }

    #[test]
    fn ranges_as_the_guidelines_define_them() {
        let r = |t: &str| Range::parse(t, 1.0).unwrap();
        assert!(r("10").alerts(11.0) && r("10").alerts(-1.0) && !r("10").alerts(5.0));
        assert!(r("10:").alerts(9.0) && !r("10:").alerts(1e9));
        assert!(r("~:10").alerts(11.0) && !r("~:10").alerts(-1e9));
        assert!(r("10:20").alerts(9.0) && r("10:20").alerts(21.0) && !r("10:20").alerts(15.0));
        assert!(r("@10:20").alerts(15.0) && !r("@10:20").alerts(21.0));
        assert_eq!(Range::parse("20:10", 1.0), None);
        assert_eq!(Range::parse("x", 1.0), None);
        for t in ["10", "10:", "~:10", "10:20", "@10:20", "@~:5"] {
            assert_eq!(r(t).to_string(), t);
        }
    }
}
