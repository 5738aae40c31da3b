//! Samples a key's history dropped before the archive read them (see
//! `EntryMut::archive_evicted`): a key set more times between two of the archive's looks
//! than its history holds — a backfill of a week of timed sets, a burst — still reaches its
//! RRD file whole. Bounded: beyond `MAX_HELD` samples the oldest are not kept, and counted.

use std::collections::HashMap;

/// At most this many samples wait (16 bytes each, and their key): a week of one key at a
/// 5 s step is 121k.
pub const MAX_HELD: usize = 1_000_000;

#[derive(Default)]
pub(crate) struct Spill {
    by_key: HashMap<String, Vec<(u64, f64)>>,
    held: usize,
    /// Samples that did not fit, since the archive last asked.
    dropped: u64,
}

impl Spill {
    pub(crate) fn keep(&mut self, key: &str, sample: (u64, f64)) {
        if self.held >= MAX_HELD {
            self.dropped += 1;
            return;
        }
        self.held += 1;
        match self.by_key.get_mut(key) {
            Some(samples) => samples.push(sample),
            None => {
                self.by_key.insert(key.to_string(), vec![sample]);
            }
        }
    }

    /// The samples kept for `key`, oldest first.
    pub(crate) fn take(&mut self, key: &str) -> Vec<(u64, f64)> {
        let samples = self.by_key.remove(key).unwrap_or_default();
        self.held -= samples.len();
        samples
    }

    /// How many samples did not fit since the last call.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_samples_come_back_once_per_key_and_beyond_the_bound_are_counted() {
        let mut spill = Spill::default();
        spill.keep("a", (1, 1.0));
        spill.keep("b", (1, 5.0));
        spill.keep("a", (2, 2.0));
        assert_eq!(spill.take("a"), vec![(1, 1.0), (2, 2.0)]);
        assert_eq!(spill.take("a"), vec![]);
        assert_eq!(spill.held, 1);
        spill.held = MAX_HELD;
        spill.keep("c", (1, 1.0));
        assert_eq!(spill.take_dropped(), 1);
        assert_eq!(spill.take_dropped(), 0);
    }
}
