//! The line protocol receiver's parser, fuzzed (see `spud-fuzzing`) beside the property
//! test against InfluxData's parser (`line.rs`): any body, never a panic, and samples and
//! keys in proportion to it.

use proptest::prelude::*;
use spud_plugin_influx::points::{self, Precision};

const WORDS: &[&str] = &[
    ",",
    "=",
    " ",
    "\\",
    "\\ ",
    "\\,",
    "\\=",
    "\"",
    "i",
    "u",
    "t",
    "true",
    "F",
    "#",
    "1700000000000000000",
    "-9223372036854775808",
    "m,t=v f=1",
    "f=\"s\"",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    for precision in [None, Some("s"), Some("ms"), Some("h")] {
        let precision = Precision::parse(precision).unwrap();
        let mut samples = 0;
        let refused = points::samples(&text, precision, |key, value, _| {
            samples += 1;
            assert!(key.len() <= 3 * text.len() + 16, "{key} from {text:?}");
            assert!(value.len() <= text.len());
        });
        prop_assert!(
            samples <= text.matches('=').count(),
            "{samples} samples from {text:?}"
        );
        prop_assert!(refused.len() <= text.split('\n').count());
    }
    Ok(())
}

spud_fuzzing::fuzz_target!(any_body, WORDS, check, 3000);
