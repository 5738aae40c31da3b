//! The parser of munin plugins' output (`config` and fetch), fuzzed (see `spud-fuzzing`):
//! any output, never a panic, graphs and fields in proportion to its lines.

use proptest::prelude::*;
use spud_plugin_munin::output;

const WORDS: &[&str] = &[
    ".value",
    ".label",
    ".warning",
    ".critical",
    ".type",
    "graph_title",
    "graph_args",
    "multigraph",
    "U",
    ":",
    " ",
    ".",
    "-",
    "_",
    "#",
    "1700000000:",
    "DERIVE",
    "GAUGE",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let parsed = output::parse("fuzzed", &text);
    let lines = text.lines().count();
    let fields: usize = parsed.graphs.iter().map(|g| g.fields.len()).sum();
    prop_assert!(
        parsed.graphs.len() <= lines + 1,
        "{} graphs from {lines} lines",
        parsed.graphs.len()
    );
    prop_assert!(
        fields <= lines && parsed.bad.len() <= lines,
        "{fields} fields, {} bad from {lines} lines",
        parsed.bad.len()
    );
    Ok(())
}

spud_fuzzing::fuzz_target!(any_output, WORDS, check, 3000);
