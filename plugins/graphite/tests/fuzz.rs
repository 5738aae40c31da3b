//! Graphite's plaintext parser, fuzzed (see `spud-fuzzing`): any line, never a panic, and
//! a key in proportion to the line.

use proptest::prelude::*;
use spud_plugin_graphite::parse;

const WORDS: &[&str] = &[
    " ",
    "\t",
    ".",
    ";",
    "=",
    "-1",
    "1700000000",
    "nan",
    "1e999",
    ";tag=v",
    "~",
    "%",
    "\u{e9}",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(Some(parsed)) = parse::line(line) {
            prop_assert!(
                parsed.key.len() <= 2 * line.len() + 8,
                "{:?} from {line:?}",
                parsed.key
            );
            prop_assert!(parsed.value.len() <= line.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(spud_fuzzing::config(3000))]

    #[test]
    fn any_line(bytes in spud_fuzzing::input(WORDS, spud_fuzzing::corpus(env!("CARGO_MANIFEST_DIR")))) {
        check(&bytes)?;
    }
}

#[test]
fn the_seed_corpus() {
    for entry in spud_fuzzing::corpus(env!("CARGO_MANIFEST_DIR")) {
        check(&entry).unwrap();
    }
}
