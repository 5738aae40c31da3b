//! The write-ahead log beside the snapshot (`STATE.wal`): every stored sample is appended as
//! it is stored, so that a restart, even after kill -9, loses nothing that was acknowledged.
//!
//! A record is `[length u32][crc32 u32][SEQ TIME KEY VALUE]` (little-endian; the payload is
//! the snapshot's line with the sample's sequence number in front). Every key remembers the
//! sequence number of its newest sample, and a snapshot writes it down: on start the
//! snapshot is loaded, then the log replayed, each record applied only if it is newer than
//! what the snapshot holds of its key. So a snapshot taken while sets go on is exact.
//!
//! When the bytes reach the disk is the `Fsync` policy, as Redis' `appendfsync`:
//! `always` (a connection's `OK`s leave only after one fsync covers its whole batch: group
//! commit), `everysec` (written at every batch, fsynced once a second) or `no` (written, never
//! fsynced: the system decides). A snapshot compacts: the log is rotated to `STATE.wal.old`
//! just before it, and removed once it is safely written.
//!
//! A torn or damaged tail (a crash mid-write, a full disk) is reported in one line and cut
//! off; nothing after it is half-loaded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

use crate::Server;

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
    next_seq: AtomicU64,
    /// Appended, not yet written.
    pending: Mutex<Pending>,
    /// The file and how far it is written; held while writing, so writes keep their order.
    file: Mutex<Written>,
    /// How far the file is known to be on disk; held while syncing (group commit).
    synced: Mutex<u64>,
    /// Set while writes fail, so that a full disk is said once, and its end too.
    failing: Mutex<Option<String>>,
    /// The latest ranges of positions whose bytes could not be written: a commit that
    /// reaches into one fails, whoever tried the write.
    failed: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Records lost to failed writes.
    lost: AtomicU64,
}

struct Pending {
    bytes: Vec<u8>,
    records: u64,
    /// The position after the last appended byte (positions never go back, across files).
    end: u64,
}

struct Written {
    file: File,
    /// Position of the file's first byte.
    base: u64,
    /// Position after the last byte written.
    written: u64,
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
    fn open(path: &Path, policy: Fsync, next_seq: u64) -> io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Journal {
            path: path.to_path_buf(),
            policy,
            next_seq: AtomicU64::new(next_seq),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                records: 0,
                end: len,
            }),
            file: Mutex::new(Written {
                file,
                base: 0,
                written: len,
            }),
            synced: Mutex::new(len),
            failing: Mutex::new(None),
            failed: Mutex::default(),
            lost: AtomicU64::new(0),
        })
    }

    pub fn policy(&self) -> Fsync {
        self.policy
    }

    /// Records lost to failed writes so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Appends one sample (called under its key's lock, so a key's records keep its
    /// order). Returns its sequence number and the position a commit must reach.
    pub(crate) fn append(&self, time: u64, key: &str, value: &[u8]) -> (u64, u64) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut payload = Vec::with_capacity(48 + key.len() + value.len());
        payload.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(key.as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(value);
        let mut pending = self.pending.lock();
        pending
            .bytes
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        pending
            .bytes
            .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        pending.bytes.extend_from_slice(&payload);
        pending.records += 1;
        pending.end += 8 + payload.len() as u64;
        (seq, pending.end)
    }

    /// The position after everything appended so far.
    pub(crate) fn end(&self) -> u64 {
        self.pending.lock().end
    }

    /// Makes everything up to `upto` written, and, with `always`, on disk. An error means
    /// those samples are in memory only (and must not be acknowledged under `always`).
    pub fn commit(&self, upto: u64) -> Result<(), JournalError> {
        self.write_out(upto)?;
        if let Some(&(from, to)) = self.failed.lock().iter().find(|(from, to)| {
            // `upto` is a record's end: it lies in a lost range if it is after its start.
            upto > *from && upto <= *to
        }) {
            return Err(JournalError::Write {
                path: self.path.clone(),
                source: io::Error::other(format!(
                    "the bytes from {from} to {to} could not be written"
                )),
            });
        }
        if self.policy == Fsync::Always {
            self.sync_to(upto)?;
        }
        Ok(())
    }

    /// Writes what is pending, if `upto` is not written yet.
    fn write_out(&self, upto: u64) -> Result<(), JournalError> {
        let mut file = self.file.lock();
        if file.written >= upto {
            return Ok(());
        }
        self.write_pending(&mut file)
    }

    /// Writes everything appended so far, under the file's lock. On failure the records are
    /// lost (they are in memory only), and their positions are remembered as such.
    fn write_pending(&self, file: &mut Written) -> Result<(), JournalError> {
        let (bytes, records) = {
            let mut pending = self.pending.lock();
            (
                std::mem::take(&mut pending.bytes),
                std::mem::take(&mut pending.records),
            )
        };
        match file.file.write_all(&bytes) {
            Ok(()) => {
                file.written += bytes.len() as u64;
                if let Some(why) = self.failing.lock().take() {
                    tracing::info!(
                        "the write-ahead log {} takes samples again (after: {why})",
                        self.path.display()
                    );
                }
                Ok(())
            }
            Err(source) => {
                // Cut any part of these records that reached the file: the log must stay
                // whole for the records that come after. Positions move on, the file's
                // offsets do not: `base` keeps the two apart.
                let keep = file.written - file.base;
                let _ = file.file.set_len(keep);
                let from = file.written;
                file.written += bytes.len() as u64;
                file.base += bytes.len() as u64;
                let mut failed = self.failed.lock();
                failed.push_back((from, file.written));
                if failed.len() > 64 {
                    failed.pop_front();
                }
                drop(failed);
                self.lost.fetch_add(records, Ordering::Relaxed);
                let error = JournalError::Write {
                    path: self.path.clone(),
                    source,
                };
                let mut failing = self.failing.lock();
                if failing.is_none() {
                    tracing::error!("{error}");
                    *failing = Some(error.to_string());
                }
                Err(error)
            }
        }
    }

    /// fsyncs, unless someone else's fsync covered `upto` meanwhile.
    fn sync_to(&self, upto: u64) -> Result<(), JournalError> {
        let mut synced = self.synced.lock();
        if *synced >= upto {
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
            (handle, file.written)
        };
        handle.sync_data().map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })?;
        *synced = target;
        Ok(())
    }

    /// Writes and fsyncs everything appended so far.
    pub fn flush(&self) -> Result<(), JournalError> {
        let end = self.end();
        self.write_out(end)?;
        if self.policy != Fsync::No {
            self.sync_to(end)?;
        }
        Ok(())
    }

    /// Before a snapshot: everything so far goes to `STATE.wal.old` and the log starts
    /// empty. Whatever the old one holds, the snapshot will too. An old log still there (a
    /// snapshot that failed, or a crash) is added to, never replaced.
    pub(crate) fn rotate(&self) -> io::Result<()> {
        let mut file = self.file.lock();
        self.write_pending(&mut file).map_err(io::Error::other)?;
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
        } else {
            file.file.sync_data()?;
            fs::rename(&self.path, &old)?;
            file.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        file.base = file.written;
        sync_dir(&self.path)
    }

    /// After the snapshot is safely written: the rotated log is no longer needed.
    pub(crate) fn compacted(&self) {
        let _ = fs::remove_file(self.old_path());
        let _ = sync_dir(&self.path);
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Replays `STATE.wal.old` (a snapshot that did not finish) and `STATE.wal` into `server`,
/// cuts a torn tail off, and attaches a journal that appends to the log from there on.
pub fn recover(server: &Server, state: &Path, policy: Fsync) -> Result<Replayed, JournalError> {
    let path = Journal::path_for(state);
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    let mut replayed = Replayed::default();
    let mut max_seq = server.max_seq();
    for file in [&old, &path] {
        let data = match fs::read(file) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(JournalError::Read {
                    path: file.clone(),
                    source,
                })
            }
        };
        let (whole, cut) = replay(server, &data, &mut replayed, &mut max_seq);
        if let Some(why) = cut {
            let line = format!(
                "{}: {why} at byte {whole} of {}: cut off there ({} bytes)",
                file.display(),
                data.len(),
                data.len() - whole
            );
            tracing::warn!("{line}");
            replayed.cut = Some(line);
            let truncate = OpenOptions::new().write(true).open(file).and_then(|f| {
                f.set_len(whole as u64)?;
                f.sync_all()
            });
            truncate.map_err(|source| JournalError::Read {
                path: file.clone(),
                source,
            })?;
        }
    }
    // An old log stays until the next snapshot holds what it holds.
    let journal =
        Journal::open(&path, policy, max_seq + 1).map_err(|source| JournalError::Write {
            path: path.clone(),
            source,
        })?;
    server.attach_journal(Arc::new(journal));
    Ok(replayed)
}

/// Applies the records of one log file; returns how many bytes are whole, and why the rest
/// (if any) is not.
fn replay(
    server: &Server,
    data: &[u8],
    replayed: &mut Replayed,
    max_seq: &mut u64,
) -> (usize, Option<&'static str>) {
    let mut at = 0;
    while at < data.len() {
        let Some(header) = data.get(at..at + 8) else {
            return (at, Some("a record header is cut short"));
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = data.get(at + 8..at + 8 + len) else {
            return (at, Some("a record is cut short"));
        };
        if crc32fast::hash(payload) != crc {
            return (at, Some("a record's checksum does not match"));
        }
        let Some((seq, time, key, value)) = parse_record(payload) else {
            return (at, Some("a record is not SEQ TIME KEY VALUE"));
        };
        replayed.records += 1;
        *max_seq = (*max_seq).max(seq);
        if server.replay_sample(seq, time, key, value) {
            replayed.applied += 1;
        }
        at += 8 + len;
    }
    (at, None)
}

fn parse_record(payload: &[u8]) -> Option<(u64, u64, &str, &[u8])> {
    let sp = payload.iter().position(|&b| b == b' ')?;
    let seq = std::str::from_utf8(&payload[..sp]).ok()?.parse().ok()?;
    let (time, key, value) = crate::snapshot::parse_line(&payload[sp + 1..])?;
    Some((seq, time, key, value))
}

/// Writes (and with `everysec`, fsyncs) what connections and in-process sets appended,
/// once a second, until `stop`.
pub async fn flush_every_second(journal: Arc<Journal>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let j = Arc::clone(&journal);
        let _ = tokio::task::spawn_blocking(move || j.flush()).await;
    }
    let _ = tokio::task::spawn_blocking(move || journal.flush()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{snapshot, Config};

    fn values(server: &Server, key: &str) -> Vec<String> {
        server
            .get(key)
            .unwrap_or_default()
            .iter()
            .map(|s| format!("{} {}", s.time, s.value.to_string_lossy()))
            .collect()
    }

    /// A server as `spud-server --state` starts one: snapshot (if any), then the log.
    fn start(state: &Path) -> (Server, Replayed) {
        let server = if state.exists() {
            snapshot::load(state, Config::default()).unwrap()
        } else {
            Server::new(Config::default())
        };
        let replayed = recover(&server, state, Fsync::Always).unwrap();
        (server, replayed)
    }

    #[test]
    fn the_log_alone_brings_back_every_sample() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, _) = start(&state);
        for i in 0..150u64 {
            a.set("k.num", i.to_string(), Some(1000 + i)).unwrap();
        }
        a.set("k.bytes", b"\xff\x00 x".as_slice(), Some(5)).unwrap();
        a.journal().unwrap().flush().unwrap();
        drop(a); // kill -9: no snapshot

        let (b, replayed) = start(&state);
        assert_eq!(replayed.records, 151);
        assert_eq!(replayed.applied, 151);
        assert_eq!(replayed.cut, None);
        assert_eq!(b.get("k.num").unwrap().len(), 100);
        assert_eq!(values(&b, "k.num")[0], "1149 149");
        assert_eq!(b.get("k.bytes").unwrap()[0].value.as_bytes(), b"\xff\x00 x");
    }

    #[test]
    fn a_snapshot_taken_between_sets_is_completed_exactly_by_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, _) = start(&state);
        for i in 0..10u64 {
            a.set("k", i.to_string(), Some(i)).unwrap();
        }
        snapshot::save(&a, &state).unwrap();
        assert!(!Journal::path_for(&state).with_extension("wal.old").exists());
        for i in 10..15u64 {
            a.set("k", i.to_string(), Some(i)).unwrap();
        }
        let expected = values(&a, "k");
        drop(a);

        let (b, replayed) = start(&state);
        assert_eq!((replayed.records, replayed.applied), (5, 5));
        assert_eq!(values(&b, "k"), expected, "nothing lost, nothing twice");
        // The same log replayed over the same snapshot again applies the same.
        drop(b);
        let (c, replayed) = start(&state);
        assert_eq!(replayed.applied, 5);
        assert_eq!(values(&c, "k"), expected);
    }

    #[test]
    fn a_snapshot_that_did_not_finish_leaves_the_old_log_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, _) = start(&state);
        a.set("k", "1", Some(1)).unwrap();
        snapshot::save(&a, &state).unwrap();
        a.set("k", "2", Some(2)).unwrap();
        // Rotated for a snapshot that never got written (a crash, a full disk).
        a.journal().unwrap().rotate().unwrap();
        a.set("k", "3", Some(3)).unwrap();
        a.journal().unwrap().rotate().unwrap(); // a second try adds to the old log
        a.set("k", "4", Some(4)).unwrap();
        let expected = values(&a, "k");
        drop(a);
        let (b, replayed) = start(&state);
        assert_eq!(replayed.applied, 3);
        assert_eq!(values(&b, "k"), expected);
        // The next good snapshot removes the old log.
        snapshot::save(&b, &state).unwrap();
        let mut old = Journal::path_for(&state).into_os_string();
        old.push(".old");
        assert!(!PathBuf::from(old).exists());
    }

    #[test]
    fn a_torn_or_damaged_tail_is_cut_off_never_half_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, _) = start(&state);
        for i in 0..20u64 {
            a.set("k", i.to_string(), Some(i)).unwrap();
        }
        drop(a);
        let wal = Journal::path_for(&state);
        let whole = fs::read(&wal).unwrap();
        // Where each record starts.
        let mut starts = vec![0];
        while *starts.last().unwrap() < whole.len() {
            let at = *starts.last().unwrap();
            let len = u32::from_le_bytes(whole[at..at + 4].try_into().unwrap()) as usize;
            starts.push(at + 8 + len);
        }
        assert_eq!(starts.len(), 21);

        // Cut mid-record: the 19 whole ones load, the file is cut back to them.
        fs::write(&wal, &whole[..whole.len() - 3]).unwrap();
        let (b, replayed) = start(&state);
        assert_eq!(replayed.applied, 19);
        assert!(
            replayed.cut.as_deref().unwrap().contains("cut short"),
            "{replayed:?}"
        );
        assert_eq!(fs::read(&wal).unwrap().len(), starts[19]);
        assert_eq!(values(&b, "k")[0], "18 18");
        drop(b);

        // A damaged byte in record 10: records 0..10 load, the rest is cut.
        let mut damaged = whole.clone();
        damaged[starts[10] + 10] ^= 0x20;
        fs::write(&wal, &damaged).unwrap();
        let (c, replayed) = start(&state);
        assert_eq!(replayed.applied, 10);
        assert!(replayed.cut.unwrap().contains("checksum"));
        assert_eq!(values(&c, "k")[0], "9 9");
        // And appending goes on after the cut.
        c.set("k", "new", Some(99)).unwrap();
        drop(c);
        let (d, replayed) = start(&state);
        assert_eq!((replayed.applied, replayed.cut), (11, None));
        assert_eq!(values(&d, "k")[0], "99 new");
    }
}
