//! Samples waiting for a destination that has not acknowledged them yet: the remote stat
//! server, an `[[output]]`. A [`Backlog`] keeps them in memory (bounded by a count, the
//! oldest dropped beyond it) or spooled to disk (bounded by bytes), where an outage of any
//! length up to the bound, and a restart of the host meanwhile, loses nothing.
//!
//! One consumer (the destination's sender) [`take`](Backlog::take)s records in order,
//! sends them, and [`ack`](Backlog::ack)s them once the destination has them; what a broken
//! connection left unacknowledged is [`rewind`](Backlog::rewind)ed and taken again. Many
//! producers [`push`](Backlog::push).
//!
//! ```
//! let backlog = spud_spool::Backlog::memory(1000);
//! backlog.push(1_700_000_000, b"cpu.user 12");
//! let taken = backlog.take(10, std::time::Duration::ZERO);
//! assert_eq!(taken[0].body, b"cpu.user 12");
//! backlog.ack(taken.len());
//! assert_eq!(backlog.held(), 0);
//! ```

mod disk;
mod memory;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub use disk::SpoolError;

/// How long a pushed sample may wait in memory before it is written to the spool file (a
/// kill -9 loses nothing older: the file is in the page cache).
pub const WRITE_WITHIN: Duration = Duration::from_millis(10);

/// One waiting sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the backlog: increasing, and for a spool the same after a restart (a
    /// receiver can tell a resent record by it).
    pub id: u64,
    /// When it was taken (unix seconds), kept to the end.
    pub time: u64,
    /// What the destination's sender made of it (`key value`, say).
    pub body: Vec<u8>,
}

/// Where records wait: memory or a spool directory.
trait Keep: Send {
    /// Appends one record; returns how many older ones it pushed out, and whether the
    /// keep has bytes to write out now and had none before.
    fn push(&mut self, time: u64, body: &[u8]) -> (u64, bool);
    /// Up to `max` records after those already taken, oldest first.
    fn take(&mut self, max: usize) -> Vec<Record>;
    /// The `n` oldest taken records were delivered.
    fn ack(&mut self, n: usize) -> bool;
    /// Taken records not acknowledged will be taken again.
    fn rewind(&mut self);
    /// Records not acknowledged yet.
    fn held(&self) -> u64;
    /// Taken and not acknowledged.
    fn taken(&self) -> usize;
    /// Whether some record waits to be taken.
    fn ready(&self) -> bool;
    /// The time of the oldest record not acknowledged.
    fn oldest_time(&mut self) -> Option<u64>;
    /// Writes out what is buffered (records, the acknowledged position).
    fn sync(&mut self);
    /// The new bound: records for memory, bytes for a spool.
    fn set_limit(&mut self, limit: u64);
}

/// Records waiting for one destination. Cheap to share behind an `Arc`.
pub struct Backlog {
    shared: Arc<Shared>,
    /// A stable name for this backlog's records: with a record's id it names the record
    /// uniquely (a spool keeps it across restarts).
    origin: String,
    /// Wakes the thread that writes a spool's buffered bytes out (None: in memory).
    writer: Option<Thread>,
}

struct Shared {
    keep: Mutex<Box<dyn Keep>>,
    /// Held by the one sender taking from it.
    consumer: Mutex<()>,
    ready: Condvar,
    /// Set by `wake`: the next `take` returns at once.
    woken: AtomicBool,
    dropped: AtomicU64,
    closed: AtomicBool,
}

impl Backlog {
    /// Keeps at most `capacity` records in memory; beyond it the oldest not yet taken is
    /// dropped and counted.
    pub fn memory(capacity: usize) -> Arc<Backlog> {
        Arc::new(Backlog {
            shared: Shared::new(Box::new(memory::Memory::new(capacity))),
            origin: memory::origin(),
            writer: None,
        })
    }

    /// Spools to `dir` (made if missing), at most `max_bytes`; beyond it the oldest records
    /// are dropped a segment at a time and counted. Records spooled before a restart are
    /// taken first, in order; a torn tail (a crash mid-write) is cut with one line.
    ///
    /// A directory open already in this process is shared, with the new bound: an output
    /// that restarts with a changed config takes over its predecessor's records. One that
    /// another process has open is refused.
    pub fn spool(dir: &Path, max_bytes: u64) -> Result<Arc<Backlog>, SpoolError> {
        static OPEN: Mutex<Vec<(PathBuf, Weak<Backlog>)>> = Mutex::new(Vec::new());
        let path = disk::prepare(dir)?;
        let mut open = OPEN.lock();
        open.retain(|(_, backlog)| backlog.strong_count() > 0);
        if let Some(backlog) = open
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, b)| b.upgrade())
        {
            backlog.set_limit(max_bytes);
            return Ok(backlog);
        }
        let backlog = Arc::new(Backlog::open_spool(&path, max_bytes)?);
        open.push((path, Arc::downgrade(&backlog)));
        Ok(backlog)
    }

    fn open_spool(dir: &Path, max_bytes: u64) -> Result<Backlog, SpoolError> {
        let (disk, origin) = disk::Disk::open(dir, max_bytes)?;
        let shared = Shared::new(Box::new(disk));
        let weak = Arc::downgrade(&shared);
        let writer = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || write_out(weak))
            .map_err(|source| SpoolError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Backlog {
            shared,
            origin,
            writer: Some(writer.thread().clone()),
        })
    }

    /// Whether records wait on disk.
    pub fn is_spool(&self) -> bool {
        self.writer.is_some()
    }

    /// Stable across restarts for a spool: see [`Record::id`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Keeps one record, dropping (and counting) the oldest waiting ones past the bound.
    pub fn push(&self, time: u64, body: &[u8]) {
        let (dropped, dirty) = self.shared.keep.lock().push(time, body);
        if dropped > 0 {
            let before = self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            if (before + dropped).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
                tracing::warn!(
                    "{}: full, {} oldest samples dropped so far",
                    self.origin,
                    before + dropped
                );
            }
        }
        if dirty {
            if let Some(writer) = &self.writer {
                writer.unpark();
            }
        }
        self.shared.ready.notify_one();
    }

    /// Becomes its one sender, waiting for the one before to let go (a destination
    /// restarted with a changed config takes over from its predecessor). When the sender
    /// lets go, what it took and did not acknowledge will be taken again.
    pub fn consume(&self) -> Consumer<'_> {
        Consumer {
            backlog: self,
            _held: self.shared.consumer.lock(),
        }
    }

    /// Up to `max` records not yet taken, oldest first, waiting up to `wait` for one (or a
    /// `wake`).
    pub fn take(&self, max: usize, wait: Duration) -> Vec<Record> {
        let mut keep = self.shared.keep.lock();
        // Looked at under the lock `wake` takes before it notifies: no wake is missed.
        let woken = self.shared.woken.swap(false, Ordering::AcqRel);
        if !keep.ready() && !woken && !wait.is_zero() {
            self.shared.ready.wait_for(&mut keep, wait);
        }
        self.shared.woken.store(false, Ordering::Release);
        keep.take(max)
    }

    /// Ends a `take` that waits (or the next one) at once, empty if nothing came: for a
    /// sender that must look at something else (its connection, a stop) without polling.
    pub fn wake(&self) {
        self.shared.woken.store(true, Ordering::Release);
        let _keep = self.shared.keep.lock();
        self.shared.ready.notify_all();
    }

    /// The `n` oldest taken records reached their destination: they are forgotten.
    pub fn ack(&self, n: usize) {
        if n == 0 {
            return;
        }
        let dirty = self.shared.keep.lock().ack(n);
        if dirty {
            if let Some(writer) = &self.writer {
                writer.unpark();
            }
        }
        self.shared.ready.notify_all();
    }

    /// Records taken and not acknowledged will be taken again, first.
    pub fn rewind(&self) {
        self.shared.keep.lock().rewind();
        self.shared.ready.notify_all();
    }

    /// Records not acknowledged yet (waiting or taken).
    pub fn held(&self) -> u64 {
        self.shared.keep.lock().held()
    }

    /// Records taken and not acknowledged yet.
    pub fn taken(&self) -> usize {
        self.shared.keep.lock().taken()
    }

    /// Records dropped because the backlog was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The time of the oldest record not acknowledged.
    pub fn oldest_time(&self) -> Option<u64> {
        self.shared.keep.lock().oldest_time()
    }

    /// A new bound: records in memory, bytes for a spool.
    pub fn set_limit(&self, limit: u64) {
        self.shared.keep.lock().set_limit(limit);
    }

    /// Waits up to `within` until every record was acknowledged; whether they were.
    pub fn drained(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let mut keep = self.shared.keep.lock();
        while keep.held() > 0 {
            if self
                .shared
                .ready
                .wait_until(&mut keep, deadline)
                .timed_out()
            {
                return keep.held() == 0;
            }
        }
        true
    }

    /// Writes out whatever is buffered now (a spool's last records, its acknowledged
    /// position).
    pub fn sync(&self) {
        self.shared.keep.lock().sync();
    }
}

/// The sender's hold on a backlog (see [`Backlog::consume`]).
pub struct Consumer<'a> {
    backlog: &'a Backlog,
    _held: parking_lot::MutexGuard<'a, ()>,
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        self.backlog.rewind();
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.keep.lock().sync();
        if let Some(writer) = &self.writer {
            writer.unpark();
        }
    }
}

impl Shared {
    fn new(keep: Box<dyn Keep>) -> Arc<Shared> {
        Arc::new(Shared {
            keep: Mutex::new(keep),
            consumer: Mutex::new(()),
            ready: Condvar::new(),
            woken: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }
}

/// A spool's writer: parked until something is buffered, then writes it out within
/// [`WRITE_WITHIN`], so that a steady stream of pushes costs one write per interval.
fn write_out(shared: Weak<Shared>) {
    loop {
        std::thread::park();
        match shared.upgrade() {
            Some(s) if !s.closed.load(Ordering::Relaxed) => drop(s),
            _ => return,
        }
        std::thread::sleep(WRITE_WITHIN);
        match shared.upgrade() {
            Some(s) => s.keep.lock().sync(),
            None => return,
        }
    }
}
