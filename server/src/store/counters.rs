//! The server's own counters, readable as ordinary `server.*` keys with history.
//!
//! The original wrote a history entry on every increment. Here each connection counts
//! locally and adds its counts once per batch of lines; a counter keeps its total and the
//! second at which each run of increments began, which is enough to show a client the
//! same history the original would have: one entry per increment, newest first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::Sample;

macro_rules! stats {
    ($($variant:ident => $key:literal,)*) => {
        /// A counter with a fixed key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Stat { $($variant,)* }

        impl Stat {
            const ALL: &'static [Stat] = &[$(Stat::$variant,)*];
            /// The key the counter is read under.
            pub fn key(self) -> &'static str {
                match self { $(Stat::$variant => $key,)* }
            }
        }
    };
}

stats! {
    ClientsTotal => "server.clients.total",
    EventReads => "server.clients.event_reads",
    EventErrs => "server.clients.event_errs",
    ProcessLines => "server.clients.process_lines",
    Commands => "server.clients.commands",
    SlowSubscribers => "server.clients.slow_subscribers",
    LinesTooLong => "server.clients.lines_too_long",
    ComGet => "server.com_get",
    ComSet => "server.com_set",
    ComQset => "server.com_qset",
    ComSub => "server.com_sub",
    ComSubscribe => "server.com_subscribe",
    ComList => "server.com_list",
    ComListall => "server.com_listall",
    ComUptime => "server.com_uptime",
    ComQuickset => "server.com_quickset",
    ComQuit => "server.com_quit",
    ComShutdown => "server.com_shutdown",
    OkBuffered => "server.lines.ok.buffered",
    OkImmediate => "server.lines.ok.immediate",
    SetImmediate => "server.lines.set.immediate",
    ErrBuffered => "server.lines.err.buffered",
    ErrImmediate => "server.lines.err.immediate",
    BeginOutputs => "server.lines.begin_outputs",
    EndOutputs => "server.lines.end_outputs",
}

const N: usize = Stat::ALL.len();

#[derive(Default)]
struct Counter {
    total: u64,
    /// `(second, first count of that second)`, oldest first; enough to date the last N counts.
    runs: VecDeque<(u64, u64)>,
}

impl Counter {
    fn add(&mut self, n: u64, now: u64, cap: usize) {
        let first = self.total + 1;
        self.total += n;
        if self.runs.back().map(|r| r.0) != Some(now) {
            self.runs.push_back((now, first));
            if self.runs.len() > cap {
                self.runs.pop_front();
            }
        }
    }

    fn newest(&self) -> Option<Sample> {
        let (time, _) = *self.runs.back()?;
        Some(Sample::new(time, self.total.to_string()))
    }

    fn history(&self, cap: usize) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut runs = self.runs.iter().rev().peekable();
        let mut count = self.total;
        while count > 0 && out.len() < cap {
            while let Some(&&(_, first)) = runs.peek() {
                if first <= count {
                    break;
                }
                runs.next();
            }
            let Some(&&(time, _)) = runs.peek() else {
                break;
            };
            out.push(Sample::new(time, count.to_string()));
            count -= 1;
        }
        out
    }
}

/// All of the server's counters.
pub(crate) struct Counters {
    fixed: [Mutex<Counter>; N],
    /// `server.com_<word>` for command words that only start with `sub`.
    other: Mutex<HashMap<String, Counter>>,
    history: usize,
    /// How many counters have counted; changes when a new `server.*` key comes to be.
    existing: AtomicUsize,
}

impl Counters {
    pub(crate) fn new(history: usize) -> Counters {
        Counters {
            fixed: std::array::from_fn(|_| Mutex::new(Counter::default())),
            other: Mutex::new(HashMap::new()),
            history,
            existing: AtomicUsize::new(0),
        }
    }

    pub(crate) fn add(&self, stat: Stat, n: u64, now: u64) {
        if n > 0 {
            let mut counter = self.fixed[stat as usize].lock();
            if counter.total == 0 {
                self.existing.fetch_add(1, Ordering::Relaxed);
            }
            counter.add(n, now, self.history);
        }
    }

    pub(crate) fn add_command(&self, word: &str, now: u64) {
        let mut other = self.other.lock();
        let key = format!("server.com_{word}");
        let counter = other.entry(key).or_insert_with(|| {
            self.existing.fetch_add(1, Ordering::Relaxed);
            Counter::default()
        });
        counter.add(1, now, self.history);
    }

    /// How many counters exist (have counted at least once).
    pub(crate) fn existing(&self) -> usize {
        self.existing.load(Ordering::Relaxed)
    }

    /// History of a counter key, newest first; None when no such counter has counted.
    pub(crate) fn history(&self, key: &str) -> Option<Vec<Sample>> {
        if let Some(stat) = Stat::ALL.iter().find(|s| s.key() == key) {
            let c = self.fixed[*stat as usize].lock();
            return (c.total > 0).then(|| c.history(self.history));
        }
        let other = self.other.lock();
        other.get(key).map(|c| c.history(self.history))
    }

    pub(crate) fn is_counter(&self, key: &str) -> bool {
        key.starts_with("server.com_") || Stat::ALL.iter().any(|s| s.key() == key)
    }

    /// A counter's newest value.
    pub(crate) fn newest(&self, key: &str) -> Option<Sample> {
        if let Some(stat) = Stat::ALL.iter().find(|s| s.key() == key) {
            return self.fixed[*stat as usize].lock().newest();
        }
        self.other.lock().get(key).and_then(Counter::newest)
    }

    /// Every counter that has counted, with its newest value.
    pub(crate) fn newest_all(&self) -> Vec<(String, Sample)> {
        let mut out = Vec::new();
        for stat in Stat::ALL {
            if let Some(s) = self.fixed[*stat as usize].lock().newest() {
                out.push((stat.key().to_string(), s));
            }
        }
        for (key, c) in self.other.lock().iter() {
            if let Some(s) = c.newest() {
                out.push((key.clone(), s));
            }
        }
        out
    }

    pub(crate) fn value(&self, stat: Stat) -> u64 {
        self.fixed[stat as usize].lock().total
    }
}

/// Counts kept by one connection between flushes, so the hot path touches no shared memory.
#[derive(Default)]
pub(crate) struct LocalCounts {
    counts: [u64; N],
    dirty: bool,
}

impl LocalCounts {
    #[inline]
    pub(crate) fn incr(&mut self, stat: Stat) {
        self.add(stat, 1);
    }

    #[inline]
    pub(crate) fn add(&mut self, stat: Stat, n: u64) {
        self.counts[stat as usize] += n;
        self.dirty = true;
    }

    pub(crate) fn flush(&mut self, counters: &Counters, now: u64) {
        if !self.dirty {
            return;
        }
        for (i, n) in self.counts.iter_mut().enumerate() {
            if *n > 0 {
                counters.add(Stat::ALL[i], *n, now);
                *n = 0;
            }
        }
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(c: &Counter, cap: usize) -> Vec<(u64, String)> {
        c.history(cap)
            .into_iter()
            .map(|s| (s.time, s.value.to_string_lossy()))
            .collect()
    }

    #[test]
    fn history_has_one_entry_per_increment() {
        let mut c = Counter::default();
        c.add(2, 10, 100);
        c.add(1, 11, 100);
        c.add(1, 11, 100);
        assert_eq!(
            hist(&c, 100),
            vec![
                (11, "4".into()),
                (11, "3".into()),
                (10, "2".into()),
                (10, "1".into())
            ]
        );
        assert_eq!(hist(&c, 2).len(), 2);
    }

    #[test]
    fn old_runs_are_forgotten_but_recent_history_is_dated() {
        let mut c = Counter::default();
        for t in 0..500 {
            c.add(1, t, 100);
        }
        let h = hist(&c, 100);
        assert_eq!(h.len(), 100);
        assert_eq!(h[0], (499, "500".into()));
        assert_eq!(h[99], (400, "401".into()));
    }
}
