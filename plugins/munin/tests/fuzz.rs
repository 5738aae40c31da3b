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

proptest! {
    #![proptest_config(spud_fuzzing::config(3000))]

    #[test]
    fn any_output(bytes in spud_fuzzing::input(WORDS, spud_fuzzing::corpus(env!("CARGO_MANIFEST_DIR")))) {
        check(&bytes)?;
    }
}

#[test]
fn the_seed_corpus() {
    for entry in spud_fuzzing::corpus(env!("CARGO_MANIFEST_DIR")) {
        check(&entry).unwrap();
    }
}
