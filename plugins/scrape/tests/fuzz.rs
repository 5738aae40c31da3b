//! The exposition formats' parser (Prometheus text, OpenMetrics), fuzzed (see
//! `spud-fuzzing`): any body, never a panic, at most one sample per line.

use proptest::prelude::*;
use spud_plugin_scrape::exposition::{self, Format};

const WORDS: &[&str] = &[
    "{",
    "}",
    "=",
    "\"",
    "\\\"",
    "\\n",
    "\\\\",
    ",",
    " ",
    "# HELP ",
    "# TYPE ",
    "# EOF",
    " # {",
    "+Inf",
    "-Inf",
    "NaN",
    "counter",
    "_total",
    "_bucket",
    "le=\"0.5\"",
    "1395066363000",
    "1520879607.789",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let (samples, bad) = exposition::parse(&text, format);
        let lines = text.lines().count();
        prop_assert!(
            samples.len() + bad.len() <= lines,
            "{} samples, {} bad from {lines} lines",
            samples.len(),
            bad.len()
        );
        for s in &samples {
            prop_assert!(s.labels.len() <= text.len() / 4 + 1);
        }
    }
    Ok(())
}

spud_fuzzing::fuzz_target!(any_body, WORDS, check, 3000);
