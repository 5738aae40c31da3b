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

spud_fuzzing::fuzz_target!(any_line, WORDS, check, 3000);
