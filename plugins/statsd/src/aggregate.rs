//! One flush interval's aggregation, and what a flush stores. Kept apart from the sockets so
//! the arithmetic is tested on its own.
//!
//! What a flush stores, per metric name (keys under the job):
//! - counter: `<name>.count` (the interval's total, sample rates applied) and `<name>.rate`
//!   (per second);
//! - gauge: `<name>`, kept between flushes (so `+n`/`-n` move it);
//! - timer / histogram: `<name>.count`, `.rate`, `.sum`, `.mean`, `.min`, `.max`, `.median`
//!   and `.p<P>` for each configured percentile (`p99_9` for 99.9), where the P-th
//!   percentile is the value at rank round(P/100 · n) of the n sorted values, as Etsy's
//!   statsd computes `upper_P`;
//! - set: `<name>.count`, distinct members seen in the interval.
//!
//! A counter or timer with nothing in an interval stores a count of 0 (as Etsy's statsd
//! does); a name idle for `forget_after` flushes is forgotten, gauges included.
//!
//! Counters, timers and sets do not depend on the order their metrics come in, so each
//! reading thread gathers them in a [`Pending`] of its own, side by side with the others,
//! and a flush adds them into the [`Aggregate`]. Gauges do depend on it (`5|g` then `+1|g`):
//! they go straight to the one aggregate.

use std::collections::HashSet;

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use crate::parse::{Kind, Metric};

/// Bounds that keep memory flat whatever arrives.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Names held, all kinds together.
    pub keys: usize,
    /// Timer values held per interval, all timers together.
    pub samples: usize,
    /// Members held per set per interval.
    pub members: usize,
    /// Flushes a name may stay idle before it is forgotten.
    pub forget_after: u32,
}

/// What was let go to stay within the limits, by reason.
#[derive(Default, Debug, PartialEq)]
pub struct Dropped {
    /// Metrics of names beyond `keys`.
    pub keys: u64,
    /// Timer values beyond `samples`.
    pub samples: u64,
    /// Set members beyond `members`.
    pub members: u64,
}

#[derive(Default)]
struct Timer {
    values: Vec<f64>,
    /// Sample rates applied: a value sent at @0.1 counts ten.
    count: f64,
}

impl Timer {
    /// Adds one value, or only its count once `samples` (held by all timers) reaches the
    /// bound.
    fn add(
        &mut self,
        value: f64,
        rate: f64,
        samples: &mut usize,
        limits: &Limits,
        dropped: &mut Dropped,
    ) {
        self.count += 1.0 / rate;
        if *samples < limits.samples {
            self.values.push(value);
            *samples += 1;
        } else {
            dropped.samples += 1;
        }
    }
}

/// Adds `member` to `set` unless the set is at its bound (a member it holds is no news).
fn add_member(set: &mut HashSet<Box<str>>, member: &str, limits: &Limits, dropped: &mut Dropped) {
    if set.contains(member) {
        return;
    }
    if set.len() < limits.members {
        set.insert(member.into());
    } else {
        dropped.members += 1;
    }
}

/// One name's figures in a [`Pending`], and how many metrics made them (what a limit drops
/// if the aggregate cannot take the name).
#[derive(Default)]
struct Taken<T> {
    value: T,
    metrics: u64,
}

/// What one reading thread took of counters, timers and sets since the last flush, within
/// the same limits as the aggregate.
#[derive(Default)]
pub struct Pending {
    counters: HashMap<String, Taken<f64>>,
    timers: HashMap<String, Taken<Timer>>,
    sets: HashMap<String, Taken<HashSet<Box<str>>>>,
    samples: usize,
}

impl Pending {
    /// Takes one counter, timer or set (a gauge belongs to the aggregate).
    pub fn add(&mut self, m: &Metric<'_>, limits: &Limits, dropped: &mut Dropped) {
        let full = self.counters.len() + self.timers.len() + self.sets.len() >= limits.keys;
        match m.kind {
            Kind::Counter => {
                if let Some(t) = taken(&mut self.counters, m.key, full, dropped) {
                    t.value += m.value / m.rate;
                }
            }
            Kind::Timer => {
                if let Some(t) = taken(&mut self.timers, m.key, full, dropped) {
                    t.value
                        .add(m.value, m.rate, &mut self.samples, limits, dropped);
                }
            }
            Kind::Set => {
                if let Some(t) = taken(&mut self.sets, m.key, full, dropped) {
                    add_member(&mut t.value, m.text, limits, dropped);
                }
            }
            Kind::Gauge => debug_assert!(false, "gauges go to the aggregate"),
        }
    }
}

/// The entry for `key`, made if the limit allows; counts the metric.
fn taken<'m, T: Default>(
    map: &'m mut HashMap<String, Taken<T>>,
    key: &str,
    full: bool,
    dropped: &mut Dropped,
) -> Option<&'m mut Taken<T>> {
    let t = entry(map, key, full, dropped)?;
    t.metrics += 1;
    Some(t)
}

/// One name's figures in the aggregate, and the flushes it has been idle.
#[derive(Default)]
struct Slot<T> {
    value: T,
    idle: u32,
}

/// The metrics of the current interval.
#[derive(Default)]
pub struct Aggregate {
    counters: HashMap<String, Slot<f64>>,
    gauges: HashMap<String, Slot<f64>>,
    timers: HashMap<String, Slot<Timer>>,
    sets: HashMap<String, Slot<HashSet<Box<str>>>>,
    samples: usize,
}

impl Aggregate {
    fn names(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.timers.len() + self.sets.len()
    }

    /// Takes one metric; says in `dropped` what a limit refused.
    pub fn add(&mut self, m: &Metric<'_>, limits: &Limits, dropped: &mut Dropped) {
        let full = self.names() >= limits.keys;
        match m.kind {
            Kind::Counter => {
                if let Some(slot) = slot(&mut self.counters, m.key, full, dropped) {
                    slot.value += m.value / m.rate;
                }
            }
            Kind::Gauge => {
                if let Some(slot) = slot(&mut self.gauges, m.key, full, dropped) {
                    slot.value = if m.delta {
                        slot.value + m.value
                    } else {
                        m.value
                    };
                }
            }
            Kind::Timer => {
                if let Some(slot) = slot(&mut self.timers, m.key, full, dropped) {
                    slot.value
                        .add(m.value, m.rate, &mut self.samples, limits, dropped);
                }
            }
            Kind::Set => {
                if let Some(slot) = slot(&mut self.sets, m.key, full, dropped) {
                    add_member(&mut slot.value, m.text, limits, dropped);
                }
            }
        }
    }

    /// Adds what a reading thread took (and leaves it empty), within the same limits.
    pub fn take(&mut self, pending: &mut Pending, limits: &Limits, dropped: &mut Dropped) {
        for (name, t) in pending.counters.drain() {
            let full = self.names() >= limits.keys;
            match slot(&mut self.counters, &name, full, dropped) {
                Some(slot) => slot.value += t.value,
                None => dropped.keys += t.metrics - 1,
            }
        }
        for (name, t) in pending.timers.drain() {
            let full = self.names() >= limits.keys;
            match slot(&mut self.timers, &name, full, dropped) {
                Some(slot) => {
                    let room = limits.samples.saturating_sub(self.samples);
                    let kept = t.value.values.len().min(room);
                    slot.value.values.extend_from_slice(&t.value.values[..kept]);
                    slot.value.count += t.value.count;
                    self.samples += kept;
                    dropped.samples += (t.value.values.len() - kept) as u64;
                }
                None => dropped.keys += t.metrics - 1,
            }
        }
        for (name, t) in pending.sets.drain() {
            let full = self.names() >= limits.keys;
            match slot(&mut self.sets, &name, full, dropped) {
                Some(slot) => {
                    for member in t.value {
                        add_member(&mut slot.value, &member, limits, dropped);
                    }
                }
                None => dropped.keys += t.metrics - 1,
            }
        }
        pending.samples = 0;
    }

    /// Ends the interval: calls `store(key, value)` for everything a flush stores (see the
    /// module's doc), resets the interval's figures and forgets idle names.
    pub fn flush(
        &mut self,
        seconds: f64,
        percentiles: &[f64],
        forget_after: u32,
        mut store: impl FnMut(String, f64),
    ) {
        for (name, slot) in &mut self.counters {
            let total = std::mem::take(&mut slot.value);
            store(format!("{name}.count"), total);
            store(format!("{name}.rate"), total / seconds);
        }
        for (name, slot) in &self.gauges {
            store(name.clone(), slot.value);
        }
        for (name, slot) in &mut self.timers {
            let timer = std::mem::take(&mut slot.value);
            store(format!("{name}.count"), timer.count);
            store(format!("{name}.rate"), timer.count / seconds);
            for (suffix, value) in timer_figures(timer.values, percentiles) {
                store(format!("{name}.{suffix}"), value);
            }
        }
        for (name, slot) in &mut self.sets {
            store(format!("{name}.count"), slot.value.len() as f64);
            slot.value = HashSet::new();
        }
        self.samples = 0;
        forget(&mut self.counters, forget_after);
        forget(&mut self.gauges, forget_after);
        forget(&mut self.timers, forget_after);
        forget(&mut self.sets, forget_after);
    }
}

/// The slot for `key`, made if the limit allows; marks it used.
fn slot<'m, T: Default>(
    map: &'m mut HashMap<String, Slot<T>>,
    key: &str,
    full: bool,
    dropped: &mut Dropped,
) -> Option<&'m mut Slot<T>> {
    let slot = entry(map, key, full, dropped)?;
    slot.idle = 0;
    Some(slot)
}

/// The value for `key`, made if the limit allows (a refused new name is counted dropped).
fn entry<'m, V: Default>(
    map: &'m mut HashMap<String, V>,
    key: &str,
    full: bool,
    dropped: &mut Dropped,
) -> Option<&'m mut V> {
    // A name seen before is found without copying it (the common case, by far).
    match map.entry_ref(key) {
        EntryRef::Occupied(o) => Some(o.into_mut()),
        EntryRef::Vacant(_) if full => {
            dropped.keys += 1;
            None
        }
        EntryRef::Vacant(v) => Some(v.insert(V::default())),
    }
}

/// Counts a flush of idleness for every name (a name used this interval was reset to 0 when
/// used); forgets those idle for more than `after` flushes.
fn forget<T>(map: &mut HashMap<String, Slot<T>>, after: u32) {
    map.retain(|_, slot| {
        slot.idle += 1;
        slot.idle <= after
    });
}

/// sum, mean, min, max, median and the percentiles of one interval's values (none if empty).
fn timer_figures(mut values: Vec<f64>, percentiles: &[f64]) -> Vec<(String, f64)> {
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let sum: f64 = values.iter().sum();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    let mut out = vec![
        ("sum".to_string(), sum),
        ("mean".to_string(), sum / n as f64),
        ("min".to_string(), values[0]),
        ("max".to_string(), values[n - 1]),
        ("median".to_string(), median),
    ];
    for &p in percentiles {
        let rank = ((p / 100.0) * n as f64).round() as usize;
        let value = values[rank.clamp(1, n) - 1];
        out.push((percentile_name(p), value));
    }
    out
}

/// `90` → `p90`, `99.9` → `p99_9`.
pub fn percentile_name(p: f64) -> String {
    format!("p{}", p.to_string().replace('.', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const LIMITS: Limits = Limits {
        keys: 10,
        samples: 1000,
        members: 3,
        forget_after: 2,
    };

    fn feed(agg: &mut Aggregate, lines: &[&str]) -> Dropped {
        let mut dropped = Dropped::default();
        let mut key = String::new();
        for l in lines {
            parse::line(l.as_bytes(), &mut key, |m| {
                agg.add(&m, &LIMITS, &mut dropped)
            })
            .unwrap();
        }
        dropped
    }

    fn flush(agg: &mut Aggregate) -> std::collections::HashMap<String, f64> {
        let mut out = std::collections::HashMap::new();
        agg.flush(10.0, &[90.0, 99.9], LIMITS.forget_after, |k, v| {
            out.insert(k, v);
        });
        out
    }

    #[test]
    fn counters_with_sample_rates_and_rates() {
        let mut agg = Aggregate::default();
        feed(&mut agg, &["hits:1|c", "hits:1|c|@0.1", "hits:2|c:3|c"]);
        let out = flush(&mut agg);
        assert_eq!(out["hits.count"], 16.0);
        assert_eq!(out["hits.rate"], 1.6);
        // The next interval reports zero, as Etsy's statsd does.
        assert_eq!(flush(&mut agg)["hits.count"], 0.0);
    }

    #[test]
    fn gauges_move_with_signs_and_stay() {
        let mut agg = Aggregate::default();
        feed(&mut agg, &["g:10|g", "g:+5|g", "g:-2|g"]);
        assert_eq!(flush(&mut agg)["g"], 13.0);
        feed(&mut agg, &["g:-3|g"]);
        assert_eq!(flush(&mut agg)["g"], 10.0);
        assert_eq!(flush(&mut agg)["g"], 10.0);
    }

    #[test]
    fn timer_figures_as_etsy_computes_them() {
        let mut agg = Aggregate::default();
        let lines: Vec<String> = (1..=10).map(|v| format!("t:{v}|ms")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        feed(&mut agg, &lines);
        feed(&mut agg, &["t:100|ms|@0.5"]);
        let out = flush(&mut agg);
        assert_eq!(out["t.count"], 12.0);
        assert_eq!(out["t.sum"], 155.0);
        assert_eq!(out["t.min"], 1.0);
        assert_eq!(out["t.max"], 100.0);
        assert_eq!(out["t.median"], 6.0);
        // 11 values: round(0.9 · 11) = 10th → 10.
        assert_eq!(out["t.p90"], 10.0);
        assert_eq!(out["t.p99_9"], 100.0);
        let out = flush(&mut agg);
        assert_eq!(out["t.count"], 0.0);
        assert!(!out.contains_key("t.mean"));
    }

    #[test]
    fn sets_count_distinct_members_within_their_bound() {
        let mut agg = Aggregate::default();
        let dropped = feed(&mut agg, &["u:a|s", "u:b|s", "u:a|s", "u:c|s", "u:d|s"]);
        assert_eq!(flush(&mut agg)["u.count"], 3.0);
        assert_eq!(dropped.members, 1);
        assert_eq!(flush(&mut agg)["u.count"], 0.0);
    }

    #[test]
    fn names_beyond_the_bound_are_dropped_and_idle_names_forgotten() {
        let mut agg = Aggregate::default();
        let lines: Vec<String> = (0..12).map(|i| format!("k{i}:1|c")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let dropped = feed(&mut agg, &lines);
        assert_eq!(dropped.keys, 2);
        assert_eq!(flush(&mut agg).len(), 20);
        // Zeros while idle for up to forget_after (2) flushes, then forgotten.
        assert_eq!(flush(&mut agg)["k0.count"], 0.0);
        assert_eq!(flush(&mut agg)["k0.count"], 0.0);
        assert!(flush(&mut agg).is_empty());
    }

    #[test]
    fn readers_shares_add_up_to_what_one_would_have_taken() {
        let mut key = String::new();
        let mut shares = [Pending::default(), Pending::default()];
        let mut dropped = Dropped::default();
        for (i, l) in [
            "c:1|c", "c:2|c", "t:1|ms", "t:3|ms", "u:a|s", "u:b|s", "u:a|s",
        ]
        .iter()
        .enumerate()
        {
            parse::line(l.as_bytes(), &mut key, |m| {
                shares[i % 2].add(&m, &LIMITS, &mut dropped)
            })
            .unwrap();
        }
        let mut agg = Aggregate::default();
        for share in &mut shares {
            agg.take(share, &LIMITS, &mut dropped);
        }
        let out = flush(&mut agg);
        assert_eq!(
            (
                out["c.count"],
                out["t.count"],
                out["t.mean"],
                out["u.count"]
            ),
            (3.0, 2.0, 2.0, 2.0)
        );
        assert_eq!(dropped, Dropped::default());
    }

    #[test]
    fn a_share_beyond_the_names_bound_is_dropped_metric_by_metric() {
        let mut agg = Aggregate::default();
        let lines: Vec<String> = (0..10).map(|i| format!("k{i}:1|c")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        feed(&mut agg, &lines);
        let (mut share, mut dropped, mut key) =
            (Pending::default(), Dropped::default(), String::new());
        for l in ["new:1|c", "new:1|c", "new:1|c", "k0:1|c"] {
            parse::line(l.as_bytes(), &mut key, |m| {
                share.add(&m, &LIMITS, &mut dropped)
            })
            .unwrap();
        }
        agg.take(&mut share, &LIMITS, &mut dropped);
        assert_eq!(dropped.keys, 3);
        assert_eq!(flush(&mut agg)["k0.count"], 2.0);
    }
}
