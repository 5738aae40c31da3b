//! The write-ahead log beside the snapshot (`STATE.wal`): every stored sample is appended as
//! it is stored, so that a restart, even after kill -9, loses nothing that was acknowledged.
//!
//! The file is a run of frames, one per write-out: `[length u32][crc32 u32][records]`, the
//! checksum over the records; a record is `[seq u64][time u64][key length u32][value length
//! u32][key][value]`, all little-endian. Sequence numbers count
//! each key's samples; every key remembers its newest, and a snapshot writes it down: on
//! start the snapshot is loaded, then the log replayed, each record applied only if it is
//! newer than what the snapshot holds of its key. So a snapshot taken while sets go on is
//! exact, and records of different keys may come in any order.
//!
//! A set appends its record to a buffer of its key's shard, under the lock it holds anyway:
//! no lock or counter is shared by all sets. A *write-out* drains every shard's buffer into
//! the file; write-outs are numbered, and a set is covered by the first write-out numbered
//! after the one it saw begin (its *ticket*).
//!
//! When the bytes reach the disk is the `Fsync` policy, as Redis' `appendfsync`:
//! `always` (a connection's `OK`s leave only after one fsync covers its whole batch: group
//! commit), `everysec` (the log's writer thread writes what each batch appended as soon as
//! it is nudged, and fsyncs once a second) or `no` (written the same way, never fsynced: the
//! system decides). With the latter two, connections never wait for the log. A snapshot compacts: the log is rotated to `STATE.wal.old`
//! just before it, and removed once it is safely written.
//!
//! A torn or damaged tail (a crash mid-write, a full disk) is reported in one line and cut
//! off; nothing after it is half-loaded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

/// The shortest pause between two write-outs of the writer thread.
const WRITE_OUT_EVERY: Duration = Duration::from_millis(1);

/// When appended samples are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before every acknowledgement (one fsync per batch of a connection, shared by all
    /// connections waiting at that moment).
    Always,
    /// Once a second: a crash of the machine loses at most the last second; a crash of the
    /// server alone loses nothing written.
    #[default]
    Everysec,
    /// Never: written at every batch, flushed when the system decides.
    No,
}

/// Why the log could not take or give back samples.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Writing or syncing failed (a full disk, say): the samples are in memory only.
    #[error("the write-ahead log {path}: {source}; samples since are kept in memory only")]
    Write { path: PathBuf, source: io::Error },
    /// Reading it at start failed.
    #[error("the write-ahead log {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// What replaying the log did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records read.
    pub records: u64,
    /// Of those, newer than the snapshot: applied.
    pub applied: u64,
    /// A torn or damaged tail that was cut off, in one line.
    pub cut: Option<String>,
}

/// The log a running server appends to.
pub struct Journal {
    path: PathBuf,
    policy: Fsync,
    /// Write-outs begun: a set's ticket is this number when it appends.
    begun: AtomicU64,
    /// The file, and the write-outs done; held while writing, so write-outs keep their order.
    file: Mutex<Written>,
    /// The last write-out known to be on disk; held while syncing (group commit).
    synced: Mutex<u64>,
    /// Set while writes fail, so that a full disk is said once, and its end too.
    failing: Mutex<Option<String>>,
    /// The latest write-outs that could not be written: a set they covered is not durable.
    failed: Mutex<std::collections::VecDeque<u64>>,
    /// Records that failed writes left in memory only, since writing last worked.
    lost: AtomicU64,
    /// The writer thread, and whether it has been asked for a write-out.
    writer: std::sync::OnceLock<std::thread::Thread>,
    wanted: std::sync::atomic::AtomicBool,
    /// The file's length, readable without its lock.
    len: AtomicU64,
    /// Past this length the log asks for a snapshot (see `start::compaction`).
    bound: AtomicU64,
    outgrown: tokio::sync::Notify,
}

struct Written {
    file: File,
    /// Its length: where the last whole write-out ended.
    len: u64,
    /// The last write-out done.
    done: u64,
    /// What a write-out drains, reused.
    scratch: Vec<u8>,
}

/// Which write-out a set waits for: the first one begun after it appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(u64);

impl Ticket {
    fn covered_by(self) -> u64 {
        self.0 + 1
    }
}

impl Journal {
    /// The log of the snapshot at `state`: `STATE.wal`.
    pub fn path_for(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".wal");
        PathBuf::from(name)
    }

    fn old_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".old");
        PathBuf::from(name)
    }

    /// Opens (or creates) the log for appending, after it was replayed.
    pub(crate) fn open(path: &Path, policy: Fsync) -> io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Journal {
            path: path.to_path_buf(),
            policy,
            begun: AtomicU64::new(0),
            file: Mutex::new(Written {
                file,
                len,
                done: 0,
                scratch: Vec::new(),
            }),
            synced: Mutex::new(0),
            failing: Mutex::new(None),
            failed: Mutex::default(),
            lost: AtomicU64::new(0),
            writer: std::sync::OnceLock::new(),
            wanted: std::sync::atomic::AtomicBool::new(false),
            len: AtomicU64::new(len),
            bound: AtomicU64::new(u64::MAX),
            outgrown: tokio::sync::Notify::new(),
        })
    }

    /// Bytes in the log now (what a snapshot would compact).
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the log holds nothing since the last snapshot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The length past which the log asks for a snapshot.
    pub fn bound(&self) -> u64 {
        self.bound.load(Ordering::Relaxed)
    }

    pub(crate) fn set_bound(&self, bytes: u64) {
        self.bound.store(bytes, Ordering::Relaxed);
        if self.len() >= bytes {
            self.outgrown.notify_one();
        }
    }

    /// Resolves once the log has passed its bound (perhaps before the last snapshot).
    pub(crate) async fn outgrown(&self) {
        self.outgrown.notified().await
    }

    fn record_len(&self, file: &mut Written, len: u64) {
        file.len = len;
        self.len.store(len, Ordering::Relaxed);
        if len >= self.bound() {
            self.outgrown.notify_one();
        }
    }

    /// Asks the writer thread for a write-out soon (cheap when one is asked for already).
    pub(crate) fn nudge(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }

    /// The writer thread's loop: a write-out whenever nudged (at least once a second), and
    /// with `everysec` an fsync once a second. `drain` hands over the shards' buffers, and
    /// says false once the server is gone, which ends the loop.
    pub(crate) fn run_writer(&self, mut drain: impl FnMut(&mut Vec<u8>) -> bool) {
        let _ = self.writer.set(std::thread::current());
        let mut last_sync = std::time::Instant::now();
        loop {
            if !self.wanted.swap(false, Ordering::AcqRel) {
                let due = last_sync + Duration::from_secs(1);
                std::thread::park_timeout(due.saturating_duration_since(std::time::Instant::now()));
            }
            let mut alive = true;
            // A failure is said once by `write_pending`; the samples stay in memory.
            let _ = self.write_out(self.ticket(), |into| alive = drain(into));
            if !alive {
                return;
            }
            if last_sync.elapsed() >= Duration::from_secs(1) {
                if self.policy == Fsync::Everysec {
                    let done = self.file.lock().done;
                    let _ = self.sync_to(done);
                }
                last_sync = std::time::Instant::now();
            }
            // Under load, a write-out a millisecond at most: each gathers more records, and
            // the connections' nudges meanwhile cost an atomic swap each.
            std::thread::sleep(WRITE_OUT_EVERY);
        }
    }

    pub fn policy(&self) -> Fsync {
        self.policy
    }

    /// Appends one sample's record to `buffer`, its key's shard's, under that shard's lock.
    /// The caller then marks the shard as holding records, and only then takes its ticket:
    /// a write-out begun after the ticket was taken finds the mark, so it drains the record.
    pub(crate) fn append(buffer: &mut Vec<u8>, seq: u64, time: u64, key: &str, value: &[u8]) {
        buffer.extend_from_slice(&seq.to_le_bytes());
        buffer.extend_from_slice(&time.to_le_bytes());
        buffer.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buffer.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buffer.extend_from_slice(key.as_bytes());
        buffer.extend_from_slice(value);
    }

    /// The ticket of a set appended (and its shard marked) before now.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.begun.load(Ordering::SeqCst))
    }

    /// Makes the sets of `ticket` written, and, with `always`, on disk. `drain` hands over
    /// every shard's buffered records. An error means those samples are in memory only (and
    /// must not be acknowledged under `always`).
    pub fn commit(
        &self,
        ticket: Ticket,
        drain: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), JournalError> {
        self.write_out(ticket, drain)?;
        if self.policy == Fsync::Always {
            self.sync_to(ticket.covered_by())?;
        }
        Ok(())
    }

    /// Writes the shards' buffers, unless a write-out begun after `ticket` did already.
    fn write_out(
        &self,
        ticket: Ticket,
        drain: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), JournalError> {
        let mut file = self.file.lock();
        if file.done < ticket.covered_by() {
            self.write_pending(&mut file, drain);
        }
        drop(file);
        if self.failed.lock().contains(&ticket.covered_by()) {
            return Err(JournalError::Write {
                path: self.path.clone(),
                source: io::Error::other(format!("write-out {} failed", ticket.covered_by())),
            });
        }
        Ok(())
    }

    /// One write-out, under the file's lock: every record buffered so far goes to the file.
    /// On failure the records are lost (they are in memory only), and the write-out is
    /// remembered as failed.
    fn write_pending(&self, file: &mut Written, drain: impl FnOnce(&mut Vec<u8>)) {
        let number = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let mut scratch = std::mem::take(&mut file.scratch);
        scratch.clear();
        scratch.extend_from_slice(&[0; 8]);
        drain(&mut scratch);
        // One frame: its checksum is computed here, once, not per record.
        let records = &scratch[8..];
        let (len, crc) = (records.len() as u32, crc32fast::hash(records));
        scratch[..4].copy_from_slice(&len.to_le_bytes());
        scratch[4..8].copy_from_slice(&crc.to_le_bytes());
        let written = if len == 0 {
            Ok(())
        } else {
            file.file.write_all(&scratch)
        };
        match written {
            Ok(()) if len == 0 => {}
            Ok(()) => {
                self.record_len(file, file.len + scratch.len() as u64);
                if let Some(why) = self.failing.lock().take() {
                    tracing::info!(
                        "the write-ahead log {} takes samples again; {} samples are in memory \
                         only (the next snapshot holds them): {why}",
                        self.path.display(),
                        self.lost.swap(0, Ordering::Relaxed)
                    );
                }
            }
            Err(source) => {
                // Cut any part of these records that reached the file: the log must stay
                // whole for the records that come after.
                let _ = file.file.set_len(file.len);
                let mut failed = self.failed.lock();
                failed.push_back(number);
                if failed.len() > 64 {
                    failed.pop_front();
                }
                drop(failed);
                self.lost
                    .fetch_add(records_in(&scratch[8..]).count() as u64, Ordering::Relaxed);
                let error = JournalError::Write {
                    path: self.path.clone(),
                    source,
                };
                let mut failing = self.failing.lock();
                if failing.is_none() {
                    tracing::error!("{error}");
                    *failing = Some(error.to_string());
                }
            }
        }
        if scratch.capacity() > 4 << 20 {
            scratch = Vec::new();
        }
        file.scratch = scratch;
        file.done = number;
    }

    /// fsyncs, unless someone else's fsync covered write-out `number` meanwhile.
    fn sync_to(&self, number: u64) -> Result<(), JournalError> {
        let mut synced = self.synced.lock();
        if *synced >= number {
            return Ok(());
        }
        let (handle, target) = {
            let file = self.file.lock();
            let handle = file
                .file
                .try_clone()
                .map_err(|source| JournalError::Write {
                    path: self.path.clone(),
                    source,
                })?;
            (handle, file.done)
        };
        handle.sync_data().map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })?;
        *synced = target;
        Ok(())
    }

    /// Before a snapshot: everything so far goes to `STATE.wal.old` and the log starts
    /// empty. Whatever the old one holds, the snapshot will too. An old log still there (a
    /// snapshot that failed, or a crash) is added to, never replaced.
    pub(crate) fn rotate(&self, drain: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let mut file = self.file.lock();
        self.write_pending(&mut file, drain);
        if self.failed.lock().contains(&file.done) {
            return Err(io::Error::other("the last write-out failed"));
        }
        let old = self.old_path();
        if old.exists() {
            // Added to, and cut back should that fail: the old log stays whole.
            let mut to = OpenOptions::new().append(true).open(&old)?;
            let before = to.metadata()?.len();
            let appended = fs::read(&self.path)
                .and_then(|data| to.write_all(&data))
                .and_then(|()| to.sync_data());
            if let Err(e) = appended {
                let _ = to.set_len(before);
                return Err(e);
            }
            file.file.set_len(0)?;
            self.record_len(&mut file, 0);
        } else {
            file.file.sync_data()?;
            fs::rename(&self.path, &old)?;
            file.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.record_len(&mut file, 0);
        }
        sync_dir(&self.path)
    }

    /// After the snapshot is safely written: the rotated log is no longer needed.
    pub(crate) fn compacted(&self) {
        let _ = fs::remove_file(self.old_path());
        let _ = sync_dir(&self.path);
    }
}

/// The records of a frame: `(seq, time, key, value)`, or None for one that does not parse
/// (after which there are no more).
fn records_in(mut frame: &[u8]) -> impl Iterator<Item = Option<(u64, u64, &str, &[u8])>> {
    std::iter::from_fn(move || {
        if frame.is_empty() {
            return None;
        }
        match parse_record(frame) {
            Some((seq, time, key, value, len)) => {
                frame = &frame[len..];
                Some(Some((seq, time, key, value)))
            }
            None => {
                frame = &[];
                Some(None)
            }
        }
    })
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Applies the records of one log file through `apply` (true: applied); returns how many bytes are whole, and why the rest
/// (if any) is not. A frame is applied whole or not at all.
pub(crate) fn replay(
    data: &[u8],
    replayed: &mut Replayed,
    mut apply: impl FnMut(u64, u64, &str, &[u8]) -> bool,
) -> (usize, Option<&'static str>) {
    let mut at = 0;
    while at < data.len() {
        let Some(header) = data.get(at..at + 8) else {
            return (at, Some("a frame header is cut short"));
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(frame) = data.get(at + 8..at + 8 + len) else {
            return (at, Some("a frame is cut short"));
        };
        if crc32fast::hash(frame) != crc {
            return (at, Some("a frame's checksum does not match"));
        }
        let Some(records) = records_in(frame).collect::<Option<Vec<_>>>() else {
            return (at, Some("a frame holds a record that is not a sample"));
        };
        for (seq, time, key, value) in records {
            replayed.records += 1;
            if apply(seq, time, key, value) {
                replayed.applied += 1;
            }
        }
        at += 8 + len;
    }
    (at, None)
}

/// One record at the start of `data`: `(seq, time, key, value, its length)`.
fn parse_record(data: &[u8]) -> Option<(u64, u64, &str, &[u8], usize)> {
    let word = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    };
    let half = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
    };
    let (seq, time, key_len, value_len) = (word(0)?, word(8)?, half(16)?, half(20)?);
    let key_end = 24usize.checked_add(key_len)?;
    let end = key_end.checked_add(value_len)?;
    let key = std::str::from_utf8(data.get(24..key_end)?).ok()?;
    let value = data.get(key_end..end)?;
    (spud_plugin_api::is_valid_key(key) && !value.contains(&b'\n'))
        .then_some((seq, time, key, value, end))
}
