//! Bounded fuzzing for the test command, as the line protocol's `fuzz_wire` does it: every
//! parser of input from outside (StatsD, Graphite, Influx, collectd, the exposition
//! formats, munin's and Nagios' plugin output) gets generated input: its protocol's own
//! words and separators, slices and mutations of a seed corpus of real input
//! (`<crate>/fuzz/corpus/`), and any bytes. A parser must never panic, and what it makes of
//! an input must stay in proportion to the input (no unbounded memory).
//!
//! A run takes `PROPTEST_CASES` cases when set (`PROPTEST_CASES=100000` for a long one),
//! else the target's own bounded number. Failures found are kept in `proptest-regressions/`.

use std::path::Path;

pub use proptest;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// A target's configuration: `default_cases` unless `PROPTEST_CASES` says otherwise.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // The inputs are bytes: shrinking them far is slow and says little more.
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

/// Every file of a crate's seed corpus (`fuzz/corpus/` under its manifest directory).
pub fn corpus(manifest_dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(manifest_dir).join("fuzz/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let corpus: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(
        !corpus.is_empty(),
        "the seed corpus in {} is empty",
        dir.display()
    );
    corpus
}

/// Input for a parser: pieces of its protocol (`words`), of its corpus, and any bytes,
/// joined; or a corpus entry with a few bytes changed, inserted or cut.
pub fn input(words: &'static [&'static str], corpus: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let entries = corpus.clone();
    let piece = prop_oneof![
        5 => proptest::sample::select(words).prop_map(|w| w.as_bytes().to_vec()),
        3 => prop_oneof![Just(b" ".to_vec()), Just(b"\t".to_vec()), Just(b"\n".to_vec()), Just(b"\r\n".to_vec())],
        3 => "[-A-Za-z0-9_.:]{1,8}".prop_map(String::into_bytes),
        3 => "-?[0-9]{1,20}(\\.[0-9]{0,6})?(e-?[0-9]{1,3})?".prop_map(String::into_bytes),
        2 => proptest::collection::vec(any::<u8>(), 1..8),
        2 => (proptest::sample::select(entries), any::<prop::sample::Index>(), 1..64usize)
            .prop_map(|(entry, at, len)| {
                if entry.is_empty() {
                    return entry;
                }
                let from = at.index(entry.len());
                entry[from..(from + len).min(entry.len())].to_vec()
            }),
    ];
    let joined = proptest::collection::vec(piece, 0..48).prop_map(|p| p.concat());
    let mutated = (
        proptest::sample::select(corpus),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    )
        .prop_map(|(mut entry, edits)| {
            for (at, byte, how) in edits {
                if entry.is_empty() {
                    entry.push(byte);
                    continue;
                }
                let i = at.index(entry.len());
                match how {
                    0 => entry[i] = byte,
                    1 => entry.insert(i, byte),
                    _ => entry.truncate(i),
                }
            }
            entry
        });
    prop_oneof![3 => joined, 2 => mutated].boxed()
}

/// The two tests of a fuzz target: `$name` runs `$check` on generated input (`$words` of
/// the protocol and the crate's corpus; `$cases` cases unless `PROPTEST_CASES` says more),
/// and `the_seed_corpus` on each corpus entry whole. `$check` takes `&[u8]` and returns
/// `Result<(), TestCaseError>`.
#[macro_export]
macro_rules! fuzz_target {
    ($name:ident, $words:expr, $check:path, $cases:expr) => {
        $crate::proptest::proptest! {
            #![proptest_config($crate::config($cases))]

            #[test]
            fn $name(bytes in $crate::input($words, $crate::corpus(env!("CARGO_MANIFEST_DIR")))) {
                $check(&bytes)?;
            }
        }

        #[test]
        fn the_seed_corpus() {
            for entry in $crate::corpus(env!("CARGO_MANIFEST_DIR")) {
                $check(&entry).unwrap();
            }
        }
    };
}
