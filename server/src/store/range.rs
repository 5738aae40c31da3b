//! A key's samples over a range of time, consolidated per step as RRD consolidates: the
//! average, the minimum and the maximum of the numbers in each step. Pure over samples, so
//! the store's recent history and an archive's older rows meet in one shape.

use crate::Sample;
use spud_archive::Row;

/// Where the rows of a key older than its history in memory are found (the server's
/// archive, a query API: `past/`); the store's `Config` holds one.
pub trait Past: Send + Sync + std::fmt::Debug {
    /// `key`'s rows over `[from, to)`, each at least `step` long, oldest first; empty when
    /// it knows nothing of the key.
    fn rows(&self, key: &str, from: u64, to: u64, step: u64) -> Result<Vec<Row>, String>;
}

/// Steps one answer may hold: a day at one a second (a day at 5 s is 17,280).
pub const MAX_POINTS: u64 = 86_400;

/// Without a step: about this many steps.
pub const DEFAULT_POINTS: u64 = 720;

/// One step of a range: its start (Unix seconds) and the average, minimum and maximum of
/// the numbers stored within `[time, time + step)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// What a range asks for: `[from, to)` in steps of `step` seconds (at least 1) counted
/// from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: u64,
    pub to: u64,
    pub step: u64,
}

impl Span {
    /// The span, or why not: `from` before `to`, a step of at least a second, and at most
    /// `max_points` steps.
    pub fn new(from: u64, to: u64, step: u64, max_points: u64) -> Result<Span, String> {
        if from >= to {
            return Err(format!("from ({from}) must come before to ({to})"));
        }
        if step == 0 {
            return Err("step must be at least 1 second".into());
        }
        let points = (to - from).div_ceil(step);
        if points > max_points {
            return Err(format!(
                "{points} steps asked for; at most {max_points} (a larger step)"
            ));
        }
        Ok(Span { from, to, step })
    }

    /// A step that gives about `points` steps over `[from, to)`.
    pub fn step_for(from: u64, to: u64, points: u64) -> u64 {
        (to.saturating_sub(from) / points.max(1)).max(1)
    }
}

/// The steps of `span` that hold a number among `samples` (in any order; text is left
/// out), oldest first. A step without one is left out, a gap for the reader to draw.
pub fn consolidate<'a>(samples: impl IntoIterator<Item = &'a Sample>, span: Span) -> Vec<Point> {
    let mut steps: std::collections::BTreeMap<u64, (f64, u64, f64, f64)> = Default::default();
    for s in samples {
        if s.time < span.from || s.time >= span.to {
            continue;
        }
        let Some(v) = s.value.number() else { continue };
        let start = span.from + (s.time - span.from) / span.step * span.step;
        let e = steps
            .entry(start)
            .or_insert((0.0, 0, f64::INFINITY, f64::NEG_INFINITY));
        *e = (e.0 + v, e.1 + 1, e.2.min(v), e.3.max(v));
    }
    steps
        .into_iter()
        .map(|(time, (sum, n, min, max))| Point {
            time,
            avg: sum / n as f64,
            min,
            max,
        })
        .collect()
}

/// Rows an archive read consolidated into the steps of `span` before `until`: the average
/// of the averages a step holds, the least minimum and the greatest maximum. A row longer
/// than a step (an older, coarser archive) stands for every step it covers, as `rrdtool
/// graph` draws it.
pub fn consolidate_rows(rows: &[Row], span: Span, until: u64) -> Vec<Point> {
    let end = span.to.min(until);
    if end <= span.from {
        return Vec::new();
    }
    // Rows are dense over the span: a slot per step, not a map.
    let mut steps: Vec<(f64, u64, f64, f64)> = vec![
        (0.0, 0, f64::INFINITY, f64::NEG_INFINITY);
        (end - span.from).div_ceil(span.step) as usize
    ];
    for row in rows {
        let Some(avg) = row.avg else { continue };
        let (min, max) = (row.min.unwrap_or(avg), row.max.unwrap_or(avg));
        let row_end = row.start + row.step.max(1);
        if row_end <= span.from || row.start >= end {
            continue;
        }
        let mut start = step_of(span, row.start.max(span.from));
        while start < row_end.min(end) {
            let e = &mut steps[((start - span.from) / span.step) as usize];
            *e = (e.0 + avg, e.1 + 1, e.2.min(min), e.3.max(max));
            start += span.step;
        }
    }
    steps
        .into_iter()
        .enumerate()
        .filter(|(_, (_, n, _, _))| *n > 0)
        .map(|(i, (sum, n, min, max))| Point {
            time: span.from + i as u64 * span.step,
            avg: sum / n as f64,
            min,
            max,
        })
        .collect()
}

/// The start of the step of `span` that holds `time` (`span.from` for a time before it).
pub fn step_of(span: Span, time: u64) -> u64 {
    span.from + time.saturating_sub(span.from) / span.step * span.step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn sample(time: u64, text: &str) -> Sample {
        Sample {
            time,
            value: Value::from(text),
        }
    }

    #[test]
    fn each_step_holds_the_average_minimum_and_maximum_of_its_numbers() {
        let samples = [
            sample(100, "1"),
            sample(104, "3"),
            sample(105, "10"),
            sample(109, "down"),
            sample(111, "7"),
            sample(99, "1000"),
            sample(120, "1000"),
        ];
        let span = Span::new(100, 120, 5, 100).unwrap();
        let points = consolidate(&samples, span);
        assert_eq!(
            points,
            [
                Point {
                    time: 100,
                    avg: 2.0,
                    min: 1.0,
                    max: 3.0
                },
                Point {
                    time: 105,
                    avg: 10.0,
                    min: 10.0,
                    max: 10.0
                },
                Point {
                    time: 110,
                    avg: 7.0,
                    min: 7.0,
                    max: 7.0
                },
            ]
        );
    }

    #[test]
    fn archived_rows_keep_the_spread_they_consolidated() {
        let row = |start, avg, min, max| Row {
            start,
            step: 5,
            avg,
            min,
            max,
        };
        let rows = [
            row(100, Some(2.0), Some(1.0), Some(3.0)),
            row(105, Some(4.0), Some(4.0), Some(9.0)),
            row(110, None, None, None),
            row(115, Some(6.0), None, None),
            row(120, Some(100.0), Some(100.0), Some(100.0)),
        ];
        let span = Span::new(100, 200, 10, 100).unwrap();
        assert_eq!(
            consolidate_rows(&rows, span, 120),
            [
                Point {
                    time: 100,
                    avg: 3.0,
                    min: 1.0,
                    max: 9.0
                },
                Point {
                    time: 110,
                    avg: 6.0,
                    min: 6.0,
                    max: 6.0
                },
            ]
        );
        assert_eq!(step_of(span, 125), 120);
        // A 30 s row stands for the three 10 s steps it covers.
        let coarse = [Row {
            start: 130,
            step: 30,
            avg: Some(5.0),
            min: Some(1.0),
            max: Some(8.0),
        }];
        let times: Vec<u64> = consolidate_rows(&coarse, span, 200)
            .iter()
            .map(|p| p.time)
            .collect();
        assert_eq!(times, [130, 140, 150]);
    }

    #[test]
    fn a_span_says_what_is_wrong_with_it() {
        assert!(Span::new(10, 10, 1, 10).unwrap_err().contains("before"));
        assert!(Span::new(0, 10, 0, 10).unwrap_err().contains("at least 1"));
        assert!(Span::new(0, 86_400, 5, 10_000)
            .unwrap_err()
            .contains("17280 steps"));
        assert_eq!(Span::step_for(0, 86_400, 1_000), 86);
    }
}
