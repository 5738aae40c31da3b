//! The stat server in-process: a cloneable handle to the store, the subscriptions and the
//! server's own counters. The TCP listener is a thin layer over it; `spud-host` embeds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use spud_plugin_api::is_valid_key;
use tokio::sync::mpsc;

use crate::control::Control;
use crate::store::counters::{Counters, Stat};
use crate::store::journal::{Fsync, Journal, JournalError, Ticket};
use crate::store::keyspace::Keyspace;
use crate::store::outbox::Outbox;
use crate::store::spill::Spill;
use crate::store::subscriptions::{self, Delivered, Push, Sink, Subscriptions};
use crate::store::value::Encoded;
use crate::store::watcher::Watcher;
use crate::{Pattern, Sample, Update};

/// How the server behaves; `Config::default()` is the original's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Samples kept per key, newest first.
    pub history: usize,
    /// Bytes of pushes that may wait for one subscriber connection before it is cut off.
    pub max_pending_pushes: usize,
    /// Updates that may wait for one in-process subscriber before it is cut off.
    pub channel_capacity: usize,
    /// Where ranges beyond the history in memory are read (`past`).
    pub past: Option<Arc<dyn crate::store::range::Past>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            history: 100,
            max_pending_pushes: 8 << 20,
            channel_capacity: 65_536,
            past: None,
        }
    }
}

/// Why a set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Keys are `[-A-Za-z0-9_.:]+`.
    #[error("invalid key {0:?}: keys are made of letters, digits and - _ . :")]
    InvalidKey(String),
    /// The line protocol cannot carry a line break inside a value.
    #[error("value for {0} contains a line break")]
    LineBreakInValue(String),
    /// With `fsync = always`, the write-ahead log could not take it: it is in memory only.
    #[error("{0}")]
    NotDurable(String),
}

/// A key and a value that passed the store's checks: a sample checked where it enters the
/// host is not checked again by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'a> {
    key: &'a str,
    value: &'a str,
}

impl<'a> Checked<'a> {
    /// The sample, if the store would take it.
    pub fn new(key: &'a str, value: &'a str) -> Result<Checked<'a>, SetError> {
        check(key, value.as_bytes())?;
        Ok(Checked { key, value })
    }

    pub fn key(self) -> &'a str {
        self.key
    }

    pub fn value(self) -> &'a str {
        self.value
    }
}

fn check(key: &str, value: &[u8]) -> Result<(), SetError> {
    if !is_valid_key(key) {
        return Err(SetError::InvalidKey(key.to_string()));
    }
    if value.contains(&b'\n') {
        return Err(SetError::LineBreakInValue(key.to_string()));
    }
    Ok(())
}

/// A sample's time, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// When the sample was taken, by the server or the collector that took it: a live
    /// sample, stored every time.
    Taken(u64),
    /// A time that came with the sample (a replay, a resend, a stream's redelivery): one that
    /// repeats the key's newest sample is stored once.
    Given(u64),
}

/// A handle to one stat server. Clones share it.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("keys", &self.shared.keys.len())
            .field("subscriptions", &self.shared.subscriptions.len())
            .finish()
    }
}

struct Shared {
    config: Config,
    keys: Keyspace,
    subscriptions: Subscriptions,
    counters: Counters,
    /// The write-ahead log, once attached (after the snapshot and the log were replayed).
    journal: std::sync::OnceLock<Arc<Journal>>,
    started: Instant,
    next_id: AtomicU64,
    control: parking_lot::RwLock<Option<Arc<dyn Control>>>,
    /// What sees every set (the alert rules, once started).
    watcher: std::sync::OnceLock<Arc<dyn Watcher>>,
    /// Samples dropped from a history before the archive read them, once it archives.
    spill: std::sync::OnceLock<parking_lot::Mutex<Spill>>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Server {
    /// A new, empty server.
    pub fn new(config: Config) -> Server {
        let counters = Counters::new(config.history);
        Server {
            shared: Arc::new(Shared {
                config,
                keys: Keyspace::new(),
                subscriptions: Subscriptions::default(),
                counters,
                journal: std::sync::OnceLock::new(),
                started: Instant::now(),
                next_id: AtomicU64::new(1),
                control: parking_lot::RwLock::new(None),
                watcher: std::sync::OnceLock::new(),
                spill: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Stores `value` under `key` at `time` (default: now) and pushes it to subscribers.
    pub fn set(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        time: Option<u64>,
    ) -> Result<(), SetError> {
        let value = value.as_ref();
        check(key, value)?;
        let stamp = match time {
            Some(time) => Stamp::Given(time),
            None => Stamp::Taken(unix_now()),
        };
        self.store(key, value, stamp)
    }

    /// `set` of a sample checked already on its way here.
    pub fn set_checked(&self, sample: Checked<'_>, stamp: Stamp) -> Result<(), SetError> {
        self.store(sample.key, sample.value.as_bytes(), stamp)
    }

    fn store(&self, key: &str, value: &[u8], stamp: Stamp) -> Result<(), SetError> {
        let now = unix_now();
        let done = self.set_unchecked(key, value, stamp);
        self.count_delivered(done, now);
        // In-process sets (the host's collectors) are written out by the log's
        // once-a-second flush, within what `everysec` promises, rather than each waking
        // the writer: an idle host wakes it once a second. With `always`, each one waits
        // for the disk.
        match (self.journal(), done.ticket) {
            (Some(journal), Some(ticket)) if journal.policy() == Fsync::Always => self
                .commit_journal(ticket)
                .map_err(|e| SetError::NotDurable(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Writes (and with `always`, fsyncs) the log up to `ticket`.
    pub(crate) fn commit_journal(&self, ticket: Ticket) -> Result<(), JournalError> {
        match self.journal() {
            Some(journal) => journal.commit(ticket, |into| self.shared.keys.drain_log(into)),
            None => Ok(()),
        }
    }

    /// Before a snapshot (see `Journal::rotate`).
    pub(crate) fn rotate_journal(&self) -> std::io::Result<()> {
        match self.journal() {
            Some(journal) => journal.rotate(|into| self.shared.keys.drain_log(into)),
            None => Ok(()),
        }
    }

    /// The write-ahead log, if the server keeps one.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.shared.journal.get()
    }

    /// Starts logging every stored sample to `journal`, with its writer thread (which ends
    /// once the server is gone).
    pub(crate) fn attach_journal(&self, journal: Arc<Journal>) {
        let _ = self.shared.journal.set(Arc::clone(&journal));
        let server = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                journal.run_writer(|into| match server.upgrade() {
                    Some(shared) => {
                        shared.keys.drain_log(into);
                        true
                    }
                    None => false,
                })
            })
            .expect("spawn the journal's writer");
    }

    /// A sample from the write-ahead log: stored unless its key already holds it (its
    /// sequence number is not newer than the key's). Returns whether it was stored.
    pub(crate) fn replay_sample(&self, seq: u64, time: u64, key: &str, value: &[u8]) -> bool {
        let history = self.shared.config.history;
        self.shared.keys.with_entry(key, |entry| {
            if seq <= entry.seq {
                return false;
            }
            entry.push(time, Encoded::classify(value), history);
            entry.seq = seq;
            true
        })
    }

    /// A key's samples from a snapshot, oldest first, under one lock. (None: nothing.)
    pub(crate) fn load_samples(&self, key: &str, samples: &[(u64, &[u8])]) {
        if samples.is_empty() {
            return;
        }
        let history = self.shared.config.history;
        self.shared.keys.with_entry(key, |entry| {
            for &(time, value) in samples {
                entry.push(time, Encoded::classify(value), history);
            }
        });
    }

    /// Sets `seq` as the key's newest logged sample (loading a snapshot).
    pub(crate) fn set_seq(&self, key: &str, seq: u64) {
        self.shared.keys.with_entry(key, |entry| entry.seq = seq);
    }

    /// The set behind `set` and the protocol: the caller has checked key and value.
    ///
    /// A sample with a given time that repeats the key's newest (same time, same value) is
    /// taken once, as Prometheus' and VictoriaMetrics' stores take a repeated sample: a
    /// pusher's resend after a broken connection, a stream's redelivery after a crash. A
    /// live `set` without a time is stored every time, as the original did.
    pub(crate) fn set_unchecked(&self, key: &str, value: &[u8], stamp: Stamp) -> Delivered {
        let shared = &*self.shared;
        let encoded = Encoded::classify(value);
        let generation = shared.subscriptions.generation();
        let journal = shared.journal.get();
        let (time, given) = match stamp {
            Stamp::Taken(time) => (time, false),
            Stamp::Given(time) => (time, true),
        };
        let (delivered, logged) = shared.keys.with_entry_and_log(key, |entry, log| {
            if given && entry.history().newest() == Some((time, encoded)) {
                return (Delivered::default(), journal.is_some());
            }
            if let Some(spill) = shared.spill.get() {
                if let Some(sample) = entry.archive_evicted(shared.config.history) {
                    spill.lock().keep(key, sample);
                }
            }
            entry.push(time, encoded, shared.config.history);
            if let Some(watcher) = shared.watcher.get() {
                watcher.note_set(entry, encoded.number(), (!given).then_some(time));
            }
            // Logged under the key's lock: a key's records keep its order.
            if journal.is_some() {
                entry.seq += 1;
                Journal::append(log, entry.seq, time, key, value);
            }
            if !entry.subs.is_current(generation) {
                entry.subs = shared.subscriptions.matching(key);
            }
            if entry.subs.is_empty() {
                return (Delivered::default(), journal.is_some());
            }
            // Delivered under the key's lock, so that every subscriber sees one key's
            // values in the order they were stored.
            let delivered = subscriptions::deliver(&entry.subs, &mut Push::new(time, key, value));
            (delivered, journal.is_some())
        });
        // Taken after the shard was marked as holding the record (see `Journal::append`).
        let ticket = journal.filter(|_| logged).map(|j| j.ticket());
        Delivered {
            ticket,
            ..delivered
        }
    }

    pub(crate) fn count_delivered(&self, done: Delivered, now: u64) {
        self.shared
            .counters
            .add(Stat::SetImmediate, done.lines, now);
        self.shared
            .counters
            .add(Stat::SlowSubscribers, done.cut_off, now);
    }

    /// The history of `key`, newest first; None if the key was never set.
    /// The server's own counters are keys too (`server.com_get`).
    pub fn get(&self, key: &str) -> Option<Vec<Sample>> {
        if let Some(history) = self.shared.counters.history(key) {
            return Some(history);
        }
        self.shared.keys.read(key, |entry| {
            entry
                .history()
                .newest_first()
                .into_iter()
                .map(|(time, value)| Sample {
                    time,
                    value: value.to_value(),
                })
                .collect()
        })
    }

    /// The newest value of `key` if it is a number (a stored key or a counter).
    pub fn newest_number(&self, key: &str) -> Option<f64> {
        self.newest_number_at(key).map(|(_, v)| v)
    }

    /// The same, with its time.
    pub fn newest_number_at(&self, key: &str) -> Option<(u64, f64)> {
        if let Some(history) = self.shared.counters.history(key) {
            let newest = history.first()?;
            return Some((newest.time, newest.value.number()?));
        }
        self.shared
            .keys
            .read(key, |entry| {
                let (time, value) = entry.history().newest()?;
                Some((time, value.number()?))
            })
            .flatten()
    }

    /// Whether `key` exists (was set, or is a counter that has counted).
    pub fn contains(&self, key: &str) -> bool {
        self.shared.counters.history(key).is_some() || self.shared.keys.read(key, |_| ()).is_some()
    }

    /// The newest sample of every key matching `pattern`, keys in byte order.
    pub fn get_matching(&self, pattern: &Pattern) -> Vec<(String, Sample)> {
        let mut out = Vec::new();
        self.shared.keys.for_each(|entry| {
            if pattern.is_match(entry.key()) {
                out.extend(newest_sample(entry));
            }
        });
        for (key, sample) in self.shared.counters.newest_all() {
            if pattern.is_match(&key) {
                // A counter shadows a key of the same name that a client set.
                out.retain(|(k, _)| *k != key);
                out.push((key, sample));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Calls `f(key, time, number)` for every key whose newest value is a number, the
    /// server's own counters included. Runs under each shard's lock in turn: keep `f` short.
    pub fn for_each_newest_number(&self, mut f: impl FnMut(&str, u64, f64)) {
        self.shared.keys.for_each(|entry| {
            if let Some((time, value)) = entry.history().newest() {
                if let Some(n) = value.number() {
                    f(entry.key(), time, n);
                }
            }
        });
        for (key, sample) in self.shared.counters.newest_all() {
            if let Some(n) = sample.value.number() {
                f(&key, sample.time, n);
            }
        }
    }

    /// From now on, what a history drops before `take_unarchived` read it is kept for it.
    /// What the store holds already (a snapshot, a log) is unread too.
    pub(crate) fn start_archiving(&self) {
        let spill = parking_lot::Mutex::new(Spill::default());
        if self.shared.spill.set(spill).is_ok() {
            self.shared
                .keys
                .for_each_mut(|entry| entry.mark_all_unread());
        }
    }

    /// The numeric samples of `key` the archive has not read, oldest first (those its
    /// history dropped, then those it holds); and how many samples did not fit while
    /// waiting, for any key.
    pub(crate) fn take_unarchived(&self, key: &str) -> (Vec<(u64, f64)>, u64) {
        let Some(spill) = self.shared.spill.get() else {
            return (Vec::new(), 0);
        };
        self.shared
            .keys
            .read_mut(key, |entry| {
                // Under the key's lock, so no sample falls between the two.
                let mut spill = spill.lock();
                let mut samples = spill.take(key);
                // Only the unread end of the history: the rest the archive has.
                let read = entry.history().len().saturating_sub(entry.unread());
                samples.extend(
                    entry
                        .history()
                        .oldest_first()
                        .skip(read)
                        .filter_map(|(t, v)| v.number().map(|n| (t, n))),
                );
                entry.mark_read();
                (samples, spill.take_dropped())
            })
            .unwrap_or_default()
    }

    /// A cursor for `changed_since`, starting now.
    pub fn change_cursor(&self) -> ChangeCursor {
        ChangeCursor {
            marks: self.shared.keys.marks(),
        }
    }

    /// The newest sample of every key matching `pattern` set since the cursor last looked
    /// (keys in no order). For watchers that want the newest values now and then, such as a
    /// dashboard: unlike a subscription, it costs the set path nothing but a count taken
    /// under the lock it holds anyway. The server's own counters are not included.
    pub fn changed_since(
        &self,
        cursor: &mut ChangeCursor,
        pattern: &Pattern,
    ) -> Vec<(String, Sample)> {
        let mut out = Vec::new();
        self.shared.keys.changed_since(&mut cursor.marks, |entry| {
            if pattern.is_match(entry.key()) {
                out.extend(newest_sample(entry));
            }
        });
        out
    }

    /// Every key, the server's own counters included.
    pub fn key_count(&self) -> usize {
        let counters = self.shared.counters.newest_all();
        let shadowed = counters
            .iter()
            .filter(|(k, _)| self.shared.keys.read(k, |_| ()).is_some())
            .count();
        self.shared.keys.len() + counters.len() - shadowed
    }

    /// Subscriptions of every subscriber.
    pub fn subscription_count(&self) -> usize {
        self.shared.subscriptions.len()
    }

    /// How long this server has been up.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started.elapsed()
    }

    /// A counter's current total.
    pub fn stat(&self, stat: Stat) -> u64 {
        self.shared.counters.value(stat)
    }

    /// Subscribes in-process. Updates to matching keys arrive on the returned subscription
    /// until it is dropped; one that falls `channel_capacity` updates behind is cut off.
    pub fn subscribe(&self, pattern: Pattern, label: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.shared.config.channel_capacity);
        let id = self.next_id();
        let sink = Arc::new(Sink::channel(id, format!("{label}#{id}"), tx));
        self.shared.subscriptions.add(&sink, pattern);
        Subscription {
            rx,
            id,
            server: self.clone(),
        }
    }

    /// Lets `control` answer its command words on this server's connections.
    pub fn set_control(&self, control: Arc<dyn Control>) {
        *self.shared.control.write() = Some(control);
    }

    pub(crate) fn control(&self) -> Option<Arc<dyn Control>> {
        self.shared.control.read().clone()
    }

    /// What watches every set, if anything was attached.
    pub(crate) fn watcher(&self) -> Option<&Arc<dyn Watcher>> {
        self.shared.watcher.get()
    }

    /// Attaches what sees every set from now on; false if one is attached already.
    pub(crate) fn attach_watcher(&self, watcher: Arc<dyn Watcher>) -> bool {
        self.shared.watcher.set(watcher).is_ok()
    }

    /// A handle that does not keep the server alive (for its own threads).
    pub(crate) fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.shared))
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    pub(crate) fn subscriptions(&self) -> &Subscriptions {
        &self.shared.subscriptions
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.shared.keys
    }

    pub(crate) fn connection_sink(&self, label: String, outbox: Arc<Outbox>) -> Arc<Sink> {
        Arc::new(Sink::connection(self.next_id(), label, outbox))
    }
}

/// A server handle that does not keep it alive.
pub(crate) struct WeakServer(std::sync::Weak<Shared>);

impl WeakServer {
    pub(crate) fn upgrade(&self) -> Option<Server> {
        self.0.upgrade().map(|shared| Server { shared })
    }
}

/// A key with its newest sample.
fn newest_sample(entry: crate::store::keyspace::EntryRef<'_>) -> Option<(String, Sample)> {
    let (time, value) = entry.history().newest()?;
    Some((
        entry.key().to_string(),
        Sample {
            time,
            value: value.to_value(),
        },
    ))
}

/// Where `Server::changed_since` last looked.
pub struct ChangeCursor {
    marks: Vec<u64>,
}

/// An in-process subscription; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Update>,
    id: u64,
    server: Server,
}

impl Subscription {
    /// The next update; None once the server cut this subscription off for falling behind.
    pub async fn recv(&mut self) -> Option<Update> {
        self.rx.recv().await
    }

    /// The next update if one is waiting.
    pub fn try_recv(&mut self) -> Option<Update> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.server.shared.subscriptions.remove_sink(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(samples: &[Sample]) -> Vec<String> {
        samples.iter().map(|s| s.value.to_string_lossy()).collect()
    }

    #[test]
    fn set_get_and_history_cap() {
        let s = Server::new(Config {
            history: 3,
            ..Config::default()
        });
        for i in 0..5 {
            s.set("a.b", i.to_string(), Some(100 + i)).unwrap();
        }
        let h = s.get("a.b").unwrap();
        assert_eq!(texts(&h), ["4", "3", "2"]);
        assert_eq!(h[0].time, 104);
        assert!(s.get("nope").is_none());
        assert_eq!(h[0].value.number(), Some(4.0));
    }

    #[test]
    fn what_a_history_drops_before_the_archive_read_it_is_kept_for_it() {
        let s = Server::new(Config {
            history: 3,
            ..Config::default()
        });
        s.set("before", "1", Some(1)).unwrap();
        s.start_archiving();
        for i in 0..8 {
            s.set("a.b", i.to_string(), Some(100 + i)).unwrap();
        }
        s.set("a.b", "text", Some(200)).unwrap();
        let all: Vec<(u64, f64)> = (0..8).map(|i| (100 + i, i as f64)).collect();
        assert_eq!(s.take_unarchived("a.b"), (all, 0));
        // What was read is dropped without a word; then the unread 108 is kept.
        for i in 8..12 {
            s.set("a.b", i.to_string(), Some(100 + i)).unwrap();
        }
        let next: Vec<(u64, f64)> = (8..12).map(|i| (100 + i, i as f64)).collect();
        assert_eq!(s.take_unarchived("a.b").0, next);
        assert_eq!(s.take_unarchived("before").0, vec![(1, 1.0)]);
        assert_eq!(s.take_unarchived("nope"), (vec![], 0));
    }

    #[test]
    fn rejects_bad_keys_and_line_breaks() {
        let s = Server::new(Config::default());
        assert!(matches!(
            s.set("a b", "1", None),
            Err(SetError::InvalidKey(_))
        ));
        assert!(matches!(s.set("", "1", None), Err(SetError::InvalidKey(_))));
        assert!(matches!(
            s.set("a", "1\n2", None),
            Err(SetError::LineBreakInValue(_))
        ));
    }

    #[test]
    fn pattern_get_is_sorted_newest_only() {
        let s = Server::new(Config::default());
        s.set("b.x", "1", Some(1)).unwrap();
        s.set("a.x", "2", Some(2)).unwrap();
        s.set("a.x", "3", Some(3)).unwrap();
        s.set("c", "4", Some(4)).unwrap();
        let got = s.get_matching(&Pattern::new("*.x").unwrap());
        let keys: Vec<_> = got.iter().map(|(k, s)| (k.as_str(), s.time)).collect();
        assert_eq!(keys, [("a.x", 3), ("b.x", 1)]);
    }

    #[tokio::test]
    async fn in_process_subscribers_get_each_set_once() {
        let s = Server::new(Config::default());
        let mut sub = s.subscribe(Pattern::new("cpu.*").unwrap(), "test");
        s.set("cpu.user", "5", Some(10)).unwrap();
        s.set("mem.free", "9", Some(10)).unwrap();
        let u = sub.recv().await.unwrap();
        assert_eq!(
            (u.time, u.key.as_str(), u.value.number()),
            (10, "cpu.user", Some(5.0))
        );
        assert!(sub.try_recv().is_none());
        assert_eq!(s.subscription_count(), 1);
        drop(sub);
        assert_eq!(s.subscription_count(), 0);
    }

    #[test]
    fn in_process_subscriber_that_falls_behind_is_cut_off() {
        let s = Server::new(Config {
            channel_capacity: 2,
            ..Config::default()
        });
        let mut sub = s.subscribe(Pattern::new("*").unwrap(), "test");
        for i in 0..5 {
            s.set("k", i.to_string(), None).unwrap();
        }
        assert_eq!(s.stat(Stat::SlowSubscribers), 1);
        assert!(sub.try_recv().is_some());
        assert!(sub.try_recv().is_some());
        assert!(sub.try_recv().is_none());
    }

    #[test]
    fn a_repeated_sample_with_its_time_is_taken_once_a_live_one_every_time() {
        let server = Server::new(Config::default());
        server.set("k", "7", Some(100)).unwrap();
        server.set("k", "7", Some(100)).unwrap();
        assert_eq!(server.get("k").unwrap().len(), 1, "a resend is taken once");
        server.set("k", "8", Some(100)).unwrap();
        server.set("k", "7", Some(101)).unwrap();
        assert_eq!(
            server.get("k").unwrap().len(),
            3,
            "a new value or time is a new sample"
        );
        server.set("live", "1", None).unwrap();
        server.set("live", "1", None).unwrap();
        assert_eq!(
            server.get("live").unwrap().len(),
            2,
            "live sets stay as the original"
        );
    }
}
