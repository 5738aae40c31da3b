//! The Nagios plugin output and perfdata parser, fuzzed (see `spud-fuzzing`): any output,
//! never a panic, perfdata items in proportion to it.

use proptest::prelude::*;
use spud_plugin_nagios::perfdata;

const WORDS: &[&str] = &[
    "|", "=", ";", "'", "''", "@", "~", ":", "%", "s", "ms", "us", "B", "KB", "MB", "GB", "TB",
    "c", " ", "OK - ", "CRITICAL", "U",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let out = perfdata::parse(&text);
    // Items are separated by blanks (any whitespace) and `|`.
    let pieces = text.split(|c: char| c.is_whitespace() || c == '|').count();
    prop_assert!(
        out.perfdata.len() + out.bad.len() <= pieces,
        "{} items from {pieces} pieces",
        out.perfdata.len() + out.bad.len()
    );
    prop_assert!(out.long_text.len() <= text.lines().count());
    for range in [text.as_ref(), "10:", "~:20", "@5:6"] {
        let _ = perfdata::Range::parse(range, 1.0);
    }
    Ok(())
}

spud_fuzzing::fuzz_target!(any_output, WORDS, check, 3000);
