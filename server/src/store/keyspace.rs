//! Every key and its history, in shards so that setters on different keys rarely meet.

use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use hashbrown::hash_table::Entry as TableEntry;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};

use crate::store::blocks::Blocks;
use crate::store::history::{History, Samples};
use crate::store::subscriptions::SinkList;
use crate::store::value::Encoded;

const SHARDS: usize = 64;

pub(crate) struct Entry {
    /// The samples, with the key itself in the same block (in its shard's `Blocks`).
    history: History,
    /// Subscribers of this key, as matched at some generation of the registry.
    pub(crate) subs: SinkList,
    /// Its shard's write count at its last write, modulo 2^32: what `changed_since` looks
    /// at (a wrapping comparison, see there).
    changed: u32,
    /// Samples in its history the archive has not read yet (see `archive_evicted`); kept
    /// only while the server archives.
    unread: u16,
    /// The write-ahead log's sequence number of its newest sample (0: none logged).
    pub(crate) seq: u64,
    /// What the alert rules need to know at a set (see `alerts`).
    pub(crate) alert: AlertMark,
}

/// A key as the alert rules see it at a set.
pub(crate) struct AlertMark {
    /// The rules' generation `watched` and `quiet` were worked out for.
    pub(crate) generation: u32,
    /// `WATCHED`: some rule watches this key; `QUEUED`: waiting for the alerts thread to
    /// evaluate it. (Bits, so that a mark fits 16 bytes.)
    flags: u8,
    /// How many more sets within `quiet` the proof covers: `UNLIMITED` for a proof that
    /// holds for any number of them at any time (conditions of `last`, `avg`, `min`,
    /// `max`); else that many, stamped by the server before `until`.
    quiet_sets: u8,
    /// Unix seconds modulo 2^16 when a limited proof ends: never more than
    /// `QUIET_HORIZON` ahead of the proof (and the alerts thread looks at the key again
    /// then), so the wrapping difference tells before from after.
    quiet_until: u16,
    /// A set of a number within `[quiet.0, quiet.1]` provably changes no alert state: no
    /// evaluation needed. Empty (`lo > hi`) unless the alerts thread proved one. Kept in
    /// `f32`, rounded inwards (see `set_quiet`): a narrower band is still proven.
    quiet: (f32, f32),
}

/// What the alerts thread proved of a key: sets of a number within `band` change no alert
/// state — any number of them (`sets` None), or the next `sets` stamped before `until`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quiet {
    pub band: (f64, f64),
    pub sets: Option<u8>,
    pub until: u64,
}

/// The furthest ahead a limited proof may reach (see `AlertMark::quiet_until`).
pub const QUIET_HORIZON: u64 = 30_000;

/// An entry as its readers see it: its fields, and its key and samples from its shard's
/// blocks.
#[derive(Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    entry: &'a Entry,
    blocks: &'a Blocks,
}

impl<'a> EntryRef<'a> {
    pub(crate) fn key(&self) -> &'a str {
        key_of(self.history())
    }

    pub(crate) fn history(&self) -> Samples<'a> {
        self.entry.history.samples(self.blocks)
    }
}

impl Deref for EntryRef<'_> {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        self.entry
    }
}

/// An entry as a writer sees it: `EntryRef`, and `push`.
pub(crate) struct EntryMut<'a> {
    entry: &'a mut Entry,
    blocks: &'a mut Blocks,
}

impl EntryMut<'_> {
    fn view(&self) -> EntryRef<'_> {
        EntryRef {
            entry: self.entry,
            blocks: self.blocks,
        }
    }

    pub(crate) fn key(&self) -> &str {
        self.view().key()
    }

    pub(crate) fn history(&self) -> Samples<'_> {
        self.view().history()
    }

    /// Appends a sample, dropping the oldest ones beyond `cap`.
    pub(crate) fn push(&mut self, time: u64, value: Encoded<'_>, cap: usize) {
        self.entry.history.push(self.blocks, time, value, cap);
    }

    /// Counts the sample about to be pushed as unread by the archive, and returns the
    /// oldest sample if that push will drop it before the archive read it: a key set more
    /// than `cap` times between two of the archive's looks (a backfill) hands its oldest
    /// samples over instead of losing them.
    pub(crate) fn archive_evicted(&mut self, cap: usize) -> Option<(u64, f64)> {
        // A history never holds more than `cap`: it drops one unread only when it is full
        // and all of it is unread. The count alone settles the usual case.
        let cap = cap.max(1);
        let history = self.entry.history.samples(self.blocks);
        if usize::from(self.entry.unread) < cap || history.len() < cap {
            self.entry.unread = self.entry.unread.saturating_add(1);
            return None;
        }
        let (time, value) = history.oldest_first().next()?;
        value.number().map(|n| (time, n))
    }

    /// Counts every sample it holds as unread (when the archive begins).
    pub(crate) fn mark_all_unread(&mut self) {
        let len = self.entry.history.samples(self.blocks).len();
        self.entry.unread = u16::try_from(len).unwrap_or(u16::MAX);
    }

    /// How many of its samples the archive has not read.
    pub(crate) fn unread(&self) -> usize {
        usize::from(self.entry.unread)
    }

    /// The archive read every sample of this key.
    pub(crate) fn mark_read(&mut self) {
        self.entry.unread = 0;
    }
}

impl Deref for EntryMut<'_> {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        self.entry
    }
}

impl DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut Entry {
        self.entry
    }
}

fn key_of(samples: Samples<'_>) -> &str {
    std::str::from_utf8(samples.label()).expect("an entry is made from a &str")
}

/// Whether `entry` is `key`'s.
fn is_for(entry: &Entry, blocks: &Blocks, key: &str) -> bool {
    entry.history.samples(blocks).label() == key.as_bytes()
}

impl AlertMark {
    const NOT_QUIET: (f32, f32) = (f32::INFINITY, f32::NEG_INFINITY);
    const UNLIMITED: u8 = u8::MAX;
    const WATCHED: u8 = 1;
    const QUEUED: u8 = 2;

    pub(crate) fn watched(&self) -> bool {
        self.flags & AlertMark::WATCHED != 0
    }

    pub(crate) fn set_watched(&mut self, watched: bool) {
        self.flag(AlertMark::WATCHED, watched);
    }

    pub(crate) fn queued(&self) -> bool {
        self.flags & AlertMark::QUEUED != 0
    }

    pub(crate) fn set_queued(&mut self, queued: bool) {
        self.flag(AlertMark::QUEUED, queued);
    }

    fn flag(&mut self, bit: u8, on: bool) {
        self.flags = if on {
            self.flags | bit
        } else {
            self.flags & !bit
        };
    }

    /// Whether a set of `n`, stamped `taken` by the server (None: a time that came with
    /// the sample), provably changes no alert state; a limited proof counts it.
    pub(crate) fn take_quiet(&mut self, n: f64, taken: Option<u64>) -> bool {
        if !(n >= f64::from(self.quiet.0) && n <= f64::from(self.quiet.1)) {
            return false;
        }
        if self.quiet_sets == AlertMark::UNLIMITED {
            return true;
        }
        let Some(time) = taken else { return false };
        let before_until = (self.quiet_until.wrapping_sub(time as u16) as i16) > 0;
        if self.quiet_sets == 0 || !before_until {
            return false;
        }
        self.quiet_sets -= 1;
        true
    }

    /// Keeps `quiet` (None: no proof), its band rounded inwards to `f32`.
    pub(crate) fn set_quiet(&mut self, quiet: Option<Quiet>) {
        let Some(q) = quiet else {
            self.quiet = AlertMark::NOT_QUIET;
            return;
        };
        let (lo, hi) = q.band;
        let (mut lo32, mut hi32) = (lo as f32, hi as f32);
        if f64::from(lo32) < lo {
            lo32 = lo32.next_up();
        }
        if f64::from(hi32) > hi {
            hi32 = hi32.next_down();
        }
        self.quiet = (lo32, hi32);
        (self.quiet_sets, self.quiet_until) = match q.sets {
            None => (AlertMark::UNLIMITED, 0),
            Some(n) => (n.min(AlertMark::UNLIMITED - 1), q.until as u16),
        };
    }
}

impl Default for AlertMark {
    fn default() -> AlertMark {
        AlertMark {
            generation: 0,
            flags: 0,
            quiet_sets: 0,
            quiet_until: 0,
            quiet: AlertMark::NOT_QUIET,
        }
    }
}

pub(crate) struct Shard {
    table: HashTable<Entry>,
    /// The entries' histories.
    blocks: Blocks,
    /// Writes to this shard so far.
    writes: u64,
    /// Write-ahead log records of this shard's sets, not written out yet.
    log: Vec<u8>,
}

pub(crate) struct Keyspace {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    hasher: DefaultHashBuilder,
    len: AtomicUsize,
    /// One bit per shard whose write-ahead log buffer may hold records: a write-out locks
    /// only those shards.
    logged: std::sync::atomic::AtomicU64,
}

impl Keyspace {
    pub(crate) fn new() -> Keyspace {
        Keyspace {
            shards: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        table: HashTable::new(),
                        blocks: Blocks::default(),
                        writes: 0,
                        log: Vec::new(),
                    }))
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            len: AtomicUsize::new(0),
            logged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Bits 40..46 pick the shard: the table itself uses the low bits for the bucket and
    /// the top seven for its tags, so these say nothing about a key's place in its shard.
    fn locate(&self, key: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 40) as usize % SHARDS)
    }

    /// Runs `f` on the key's entry, creating it if needed, under its shard's lock.
    pub(crate) fn with_entry<R>(&self, key: &str, f: impl FnOnce(&mut EntryMut<'_>) -> R) -> R {
        self.with_entry_and_log(key, |entry, _| f(entry))
    }

    /// `with_entry`, with the shard's write-ahead log buffer besides.
    pub(crate) fn with_entry_and_log<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut EntryMut<'_>, &mut Vec<u8>) -> R,
    ) -> R {
        let (hash, index) = self.locate(key);
        let mut shard = self.shards[index].lock();
        shard.writes += 1;
        let changed = shard.writes as u32;
        let hasher = &self.hasher;
        let Shard {
            table, blocks, log, ..
        } = &mut *shard;
        let found = |e: &Entry| is_for(e, blocks, key);
        let rehash = |e: &Entry| hasher.hash_one(key_of(e.history.samples(blocks)));
        let entry = match table.entry(hash, found, rehash) {
            TableEntry::Occupied(o) => o.into_mut(),
            TableEntry::Vacant(v) => {
                self.len.fetch_add(1, Ordering::Relaxed);
                v.insert(Entry {
                    history: History::new(blocks, key.as_bytes()),
                    subs: SinkList::default(),
                    changed,
                    unread: 0,
                    seq: 0,
                    alert: AlertMark::default(),
                })
                .into_mut()
            }
        };
        entry.changed = changed;
        let had_records = !log.is_empty();
        let result = f(&mut EntryMut { entry, blocks }, log);
        if blocks.wants_packing() {
            blocks.pack(table.iter_mut().map(|e| e.history.block_mut()));
        }
        if !had_records && !log.is_empty() {
            // Before the caller takes its ticket, still under the shard's lock (see
            // `journal`): a write-out that begins after that ticket sees this bit.
            self.logged.fetch_or(1 << index, Ordering::SeqCst);
        }
        result
    }

    /// Moves every shard's buffered log records to the end of `into`.
    pub(crate) fn drain_log(&self, into: &mut Vec<u8>) {
        let logged = self.logged.swap(0, Ordering::SeqCst);
        for (n, shard) in self.shards.iter().enumerate() {
            if logged & (1 << n) == 0 {
                continue;
            }
            let mut shard = shard.lock();
            into.extend_from_slice(&shard.log);
            shard.log.clear();
            if shard.log.capacity() > 1 << 20 {
                shard.log = Vec::new();
            }
        }
    }

    /// Runs `f` on the key's entry if it exists.
    pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        let (hash, index) = self.locate(key);
        let shard = self.shards[index].lock();
        let blocks = &shard.blocks;
        shard
            .table
            .find(hash, |e| is_for(e, blocks, key))
            .map(|entry| f(EntryRef { entry, blocks }))
    }

    /// Runs `f` on the key's entry if it exists, which it may change without counting as
    /// a write.
    pub(crate) fn read_mut<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut EntryMut<'_>) -> R,
    ) -> Option<R> {
        let (hash, index) = self.locate(key);
        let mut shard = self.shards[index].lock();
        let Shard { table, blocks, .. } = &mut *shard;
        let entry = table.find_mut(hash, |e| is_for(e, blocks, key))?;
        Some(f(&mut EntryMut { entry, blocks }))
    }

    /// Visits every entry to change it, without counting as a write; one shard at a time.
    pub(crate) fn for_each_mut(&self, mut f: impl FnMut(&mut EntryMut<'_>)) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let Shard { table, blocks, .. } = &mut *shard;
            for entry in table.iter_mut() {
                f(&mut EntryMut { entry, blocks });
            }
        }
    }

    /// Visits every entry, one shard at a time; each shard is locked only while visited.
    pub(crate) fn for_each(&self, mut f: impl FnMut(EntryRef<'_>)) {
        self.for_each_shard(|entries| entries.for_each(&mut f));
    }

    /// Each shard's write count: a starting point for `changed_since`.
    pub(crate) fn marks(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.lock().writes).collect()
    }

    /// Visits the entries written since `marks` (and moves the marks to now). A shard
    /// without writes since is passed over without a look at its entries. An entry's
    /// count is kept modulo 2^32, compared wrapping: one left alone for over 2^31 of its
    /// shard's writes may be visited again, which costs its reader a look and no more.
    pub(crate) fn changed_since(&self, marks: &mut [u64], mut f: impl FnMut(EntryRef<'_>)) {
        for (shard, mark) in self.shards.iter().zip(marks.iter_mut()) {
            let shard = shard.lock();
            if shard.writes != *mark {
                let blocks = &shard.blocks;
                let since = *mark as u32;
                shard
                    .table
                    .iter()
                    .filter(|e| e.changed.wrapping_sub(since) as i32 > 0)
                    .for_each(|entry| f(EntryRef { entry, blocks }));
                *mark = shard.writes;
            }
        }
    }

    /// Hands `f` the entries of one shard at a time, under that shard's lock.
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut dyn Iterator<Item = EntryRef<'_>>)) {
        for shard in self.shards.iter() {
            let shard: MutexGuard<'_, Shard> = shard.lock();
            let blocks = &shard.blocks;
            f(&mut shard.table.iter().map(|entry| EntryRef { entry, blocks }));
        }
    }

    /// Visits every key's `(seq, history)`, a shard at a time, from a copy of the shard's
    /// blocks: the shard is locked only while its bytes are copied (a memcpy), not while
    /// `f` reads them, so setters wait microseconds, not the time of a walk.
    pub(crate) fn for_each_shard_copied(
        &self,
        mut f: impl FnMut(&mut dyn Iterator<Item = (u64, Samples<'_>)>),
    ) {
        let (mut bytes, mut places) = (Vec::new(), Vec::new());
        for shard in self.shards.iter() {
            bytes.clear();
            places.clear();
            {
                let shard: MutexGuard<'_, Shard> = shard.lock();
                for entry in shard.table.iter() {
                    let block = entry.history.samples(&shard.blocks).bytes();
                    places.push((entry.seq, bytes.len()..bytes.len() + block.len()));
                    bytes.extend_from_slice(block);
                }
            }
            f(&mut places
                .iter()
                .map(|(seq, at)| (*seq, Samples::from_bytes(&bytes[at.clone()]))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key has one: its size decides much of the memory a key takes beside its block.
    #[test]
    fn an_entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<AlertMark>(), 16);
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    /// Histories that grow while others do move inside their shard and get packed many
    /// times over; every key still holds exactly its own samples.
    #[test]
    fn histories_survive_moving_and_packing() {
        let keys = Keyspace::new();
        let name = |k: usize| format!("k.{k}");
        for round in 0..150u64 {
            for k in 0..2000usize {
                // Values whose size varies by key and round, so blocks grow unevenly.
                let value = (round * 7919 * (k as u64 % 13 + 1)).to_string();
                keys.with_entry(&name(k), |e| {
                    e.push(round, Encoded::classify(value.as_bytes()), 100)
                });
            }
        }
        for k in 0..2000usize {
            let got: Vec<(u64, Vec<u8>)> = keys
                .read(&name(k), |e| {
                    assert_eq!(e.key(), name(k));
                    e.history()
                        .oldest_first()
                        .map(|(t, v)| {
                            let mut text = Vec::new();
                            v.write_text(&mut text);
                            (t, text)
                        })
                        .collect()
                })
                .expect("stored");
            let want: Vec<(u64, Vec<u8>)> = (50..150u64)
                .map(|r| (r, (r * 7919 * (k as u64 % 13 + 1)).to_string().into_bytes()))
                .collect();
            assert_eq!(got, want, "key {k}");
        }
    }

    #[test]
    fn a_quiet_band_kept_in_f32_only_narrows() {
        let mut mark = AlertMark::default();
        let band = |lo, hi| Quiet {
            band: (lo, hi),
            sets: None,
            until: 0,
        };
        assert!(!mark.take_quiet(0.0, Some(0)));
        mark.set_quiet(Some(band(0.1, 0.3)));
        assert!(mark.take_quiet(0.2, None));
        assert!(!mark.take_quiet(0.1 - 1e-12, None) && !mark.take_quiet(0.3 + 1e-12, None));
        assert!(f64::from(mark.quiet.0) >= 0.1 && f64::from(mark.quiet.1) <= 0.3);
        mark.set_quiet(None);
        assert!(!mark.take_quiet(0.2, None));
    }

    #[test]
    fn a_limited_proof_covers_so_many_sets_stamped_before_its_end() {
        let mut mark = AlertMark::default();
        let now = 1_800_000_000;
        mark.set_quiet(Some(Quiet {
            band: (0.0, 10.0),
            sets: Some(2),
            until: now + 5,
        }));
        // A time that came with the sample is always looked at.
        assert!(!mark.take_quiet(1.0, None));
        assert!(mark.take_quiet(1.0, Some(now)));
        assert!(!mark.take_quiet(1.0, Some(now + 5)));
        assert!(mark.take_quiet(1.0, Some(now + 4)));
        assert!(!mark.take_quiet(1.0, Some(now)), "two sets only");
        // Across the wrap of the 16-bit seconds.
        let wrap = (now | 0xffff) - 1;
        mark.set_quiet(Some(Quiet {
            band: (0.0, 10.0),
            sets: Some(9),
            until: wrap + 10,
        }));
        assert!(mark.take_quiet(1.0, Some(wrap + 3)));
        assert!(!mark.take_quiet(1.0, Some(wrap + 10)));
        assert!(!mark.take_quiet(1.0, Some(wrap - 40_000)));
    }
}
