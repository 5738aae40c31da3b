//! The StatsD parser and aggregate, fuzzed (see `spud-fuzzing`): any datagram, never a
//! panic, and what it holds and flushes stays within the limits however much arrives.

use proptest::prelude::*;
use spud_plugin_statsd::aggregate::{Aggregate, Dropped, Limits, Pending};
use spud_plugin_statsd::parse::{self, Kind};

const WORDS: &[&str] = &[
    ":", "|", "|c", "|g", "|ms", "|h", "|d", "|s", "|@", "@0.1", "|#", "#", ",", "+", "-", "nan",
    "inf", "1e308", ":1|c", "env:prod",
];

const LIMITS: Limits = Limits {
    keys: 64,
    samples: 256,
    members: 64,
    forget_after: 2,
};

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (mut aggregate, mut pending) = (Aggregate::default(), Pending::default());
    let mut dropped = Dropped::default();
    let mut key = String::new();
    for line in bytes.split(|b| *b == b'\n') {
        let mut metrics = 0;
        let _ = parse::line(line, &mut key, |m| {
            metrics += 1;
            assert!(m.key.len() <= 2 * line.len() + 8, "{} from {line:?}", m.key);
            // As the UDP readers route them: gauges to the aggregate, the rest to a reader's
            // pending share (the TCP path gives everything to the aggregate).
            match m.kind {
                Kind::Gauge => aggregate.add(&m, &LIMITS, &mut dropped),
                _ => pending.add(&m, &LIMITS, &mut dropped),
            }
        });
        prop_assert!(
            metrics <= line.len() / 2 + 1,
            "{metrics} metrics from {line:?}"
        );
    }
    aggregate.take(&mut pending, &LIMITS, &mut dropped);
    for _ in 0..3 {
        let mut stored = 0;
        aggregate.flush(1.0, &[50.0, 90.0, 99.9], LIMITS.forget_after, |_, _| {
            stored += 1
        });
        // Counters 2, gauges 1, sets 1, timers up to 7 + 2 per percentile.
        prop_assert!(stored <= LIMITS.keys * 13, "{stored} stored");
    }
    Ok(())
}

spud_fuzzing::fuzz_target!(any_datagram, WORDS, check, 3000);
