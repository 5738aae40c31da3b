//! The text exposition formats, line by line: Prometheus 0.0.4 and OpenMetrics 1.0.
//!
//! Both write one sample per line, `name{label="value",…} value [timestamp]`, with `#`
//! lines for metadata. They differ in the timestamp's unit (milliseconds in Prometheus
//! text, seconds with a fraction in OpenMetrics), in OpenMetrics' `# EOF` and exemplars
//! (` # {…} value` after a sample). A malformed line is reported with its number and the
//! others are kept: an exporter with one odd line still gives everything else.

/// Which format a body is in (from the response's `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps in milliseconds.
    Prometheus,
    /// `application/openmetrics-text`: timestamps in seconds.
    OpenMetrics,
}

/// One sample.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric name as written (`http_requests_total`, `latency_bucket`).
    pub name: &'a str,
    /// Its labels, unescaped, in the order written.
    pub labels: Vec<(&'a str, String)>,
    /// The value's text as written (`12.5`, `+Inf`, `NaN`).
    pub value: &'a str,
    /// The exposition's timestamp as Unix seconds, if it gave one.
    pub time: Option<u64>,
}

/// A line that could not be read: its number (from 1) and why.
#[derive(Debug, PartialEq)]
pub struct Bad {
    /// The line's number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// Every sample of `body`, and the lines that could not be read.
pub fn parse(body: &str, format: Format) -> (Vec<Sample<'_>>, Vec<Bad>) {
    let mut samples = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match sample(line, format) {
            Ok(s) => samples.push(s),
            Err(why) => bad.push(Bad { line: i + 1, why }),
        }
    }
    (samples, bad)
}

fn sample(line: &str, format: Format) -> Result<Sample<'_>, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("no value after the name")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = read_labels(after, &mut labels)?;
    }
    // OpenMetrics exemplars follow ` # `: not part of the sample.
    if let Some(at) = rest.find(" # ") {
        rest = &rest[..at];
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    if !is_number(value) {
        return Err(format!("value {value:?} is not a number"));
    }
    let time = match fields.next() {
        None => None,
        Some(t) => {
            Some(timestamp(t, format).ok_or_else(|| format!("timestamp {t:?} is not a time"))?)
        }
    };
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
        time,
    })
}

/// Reads `a="x",b="y"}`; returns what follows the `}`.
fn read_labels<'a>(
    mut text: &'a str,
    labels: &mut Vec<(&'a str, String)>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start_matches([' ', '\t']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = text.find('=').ok_or("a label without '='")?;
        let name = text[..eq].trim();
        if !valid_name(name) {
            return Err(format!("{name:?} is not a label name"));
        }
        let after = text[eq + 1..].trim_start();
        let quoted = after
            .strip_prefix('"')
            .ok_or("a label value not in quotes")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("a label value is cut short".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("a label value is cut short".into()),
            }
        };
        labels.push((name, value));
        text = quoted[end + 1..].trim_start_matches([' ', '\t']);
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_number(text: &str) -> bool {
    matches!(text, "NaN" | "+Inf" | "-Inf" | "Inf") || text.parse::<f64>().is_ok()
}

fn timestamp(text: &str, format: Format) -> Option<u64> {
    match format {
        Format::Prometheus => text
            .parse::<i64>()
            .ok()
            .and_then(|ms| u64::try_from(ms.div_euclid(1000)).ok()),
        Format::OpenMetrics => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let body = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{method=\"post\",code=\"200\"} 1027 1395066363000\nup 1\nlat_bucket{le=\"+Inf\"} 3\nweird{path=\"a\\\"b\\\\c\\nd\"} -Inf\n";
        let (s, bad) = parse(body, Format::Prometheus);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(
            s[0].labels,
            vec![("method", "post".to_string()), ("code", "200".to_string())]
        );
        assert_eq!((s[0].value, s[0].time), ("1027", Some(1395066363)));
        assert_eq!((s[1].name, s[1].time), ("up", None));
        assert_eq!(s[2].labels[0].1, "+Inf");
        assert_eq!(s[3].labels[0].1, "a\"b\\c\nd");
    }

    #[test]
    fn openmetrics_seconds_and_exemplars() {
        let body = "# TYPE a counter\na_total 5 1700000000.250 # {trace_id=\"x\"} 1 1700000000\na_created 1600000000\n# EOF\n";
        let (s, bad) = parse(body, Format::OpenMetrics);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!((s[0].value, s[0].time), ("5", Some(1700000000)));
        assert_eq!(s[1].name, "a_created");
    }

    #[test]
    fn bad_lines_are_numbered_and_the_rest_kept() {
        let (s, bad) = parse(
            "ok 1\n9bad 1\nx{a=b} 1\ny{a=\"open} 1\nz abc\nw 1 2 3\nv 2\n",
            Format::Prometheus,
        );
        assert_eq!(
            s.iter().map(|s| s.name).collect::<Vec<_>>(),
            vec!["ok", "v"]
        );
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
    }
}
