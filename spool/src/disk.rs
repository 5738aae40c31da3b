//! Records spooled to a directory, so that an outage of any length up to the bound and a
//! restart meanwhile lose nothing.
//!
//! The directory holds segments, `<offset>.spool`, each named by the place of its first
//! byte in the one stream of records ever pushed; `acked` (the place up to which the
//! destination has everything, 8 bytes) and `id` (the spool's name). A record is
//! `[length u32][crc32 u32][time u64][body]`, little-endian, the length and checksum over
//! time and body; its id is its place, so a record keeps its id across restarts.
//!
//! Pushes gather in a buffer written out by the spool's writer thread within
//! [`WRITE_WITHIN`](crate::WRITE_WITHIN) (or at once past 64 KiB): one write for many
//! records. Segments the destination has acknowledged are deleted; past the bound the
//! oldest segment nothing was taken from is deleted and its records counted as dropped.
//! Nothing is fsynced: a crash of the host loses nothing written, a crash of the machine
//! what the system had not written yet.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Keep, Record};

/// A frame's header: length and checksum.
const HEADER: u64 = 8;
/// Buffered bytes past which a push writes them out itself.
const BUFFER: usize = 64 * 1024;

/// Why a spool could not be opened or kept.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool {path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("spool {path} is in use by another process")]
    Busy { path: PathBuf },
}

struct Segment {
    /// Place of its first byte.
    start: u64,
    /// Place after its last byte, buffered ones included.
    end: u64,
    /// Records in it.
    records: u64,
}

pub(crate) struct Disk {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first; the last is written to. Never empty.
    segments: VecDeque<Segment>,
    /// Appends to the last segment.
    file: File,
    /// Records not written out yet (they belong to the last segment).
    buffer: Vec<u8>,
    /// Place up to which segment files hold bytes.
    written: u64,
    /// Everything before it was acknowledged.
    acked: u64,
    /// Whether `acked` changed since it was last written out.
    acked_dirty: bool,
    /// The next record to take.
    cursor: u64,
    /// Ends of taken records not yet acknowledged, oldest first.
    taken: VecDeque<u64>,
    /// Records not acknowledged.
    held: u64,
    /// Reads the segment starting at `.0`, positioned at `.1`.
    reader: Option<(u64, u64, BufReader<File>)>,
    acked_file: File,
}

/// Makes the directory; its canonical path.
pub(crate) fn prepare(dir: &Path) -> Result<PathBuf, SpoolError> {
    let io = |source| SpoolError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    dir.canonicalize().map_err(io)
}

impl Disk {
    /// Opens (or makes) the spool in `dir`; returns it with its name.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<(Disk, String), SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let origin = match fs::read_to_string(dir.join("id")) {
            Ok(id) => id.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = crate::memory::origin().replacen("memory", "spool", 1);
                fs::write(dir.join("id"), format!("{id}\n")).map_err(io)?;
                id
            }
            Err(e) => return Err(io(e)),
        };
        let acked_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("acked"))
            .map_err(io)?;
        // Held while the file is open: a second process must not take the same records.
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(acked_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(SpoolError::Busy {
                path: dir.to_path_buf(),
            });
        }
        let mut acked = [0u8; 8];
        let acked = match acked_file.read_exact_at(&mut acked, 0) {
            Ok(()) => u64::from_le_bytes(acked),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io(e)),
        };

        let mut starts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if let Some(start) = name.strip_suffix(".spool") {
                match start.parse::<u64>() {
                    Ok(start) => starts.push(start),
                    Err(_) => {
                        return Err(SpoolError::Invalid {
                            path: dir.join(&*name),
                            why: "not a segment name (digits.spool)".into(),
                        })
                    }
                }
            }
        }
        starts.sort_unstable();
        let mut segments = VecDeque::new();
        let mut held = 0;
        for start in starts {
            let path = segment_path(dir, start);
            let scan = scan(&path, start, acked).map_err(io)?;
            held += scan.unacked;
            let segment = Segment {
                start,
                end: start + scan.good,
                records: scan.records,
            };
            if segment.end <= acked || scan.records == 0 {
                fs::remove_file(&path).map_err(io)?;
            } else {
                segments.push_back(segment);
            }
        }
        let next = segments.back().map_or(acked, |s| s.end).max(acked);
        if segments.back().is_none_or(|s| s.end < next) {
            File::create(segment_path(dir, next)).map_err(io)?;
            segments.push_back(Segment {
                start: next,
                end: next,
                records: 0,
            });
        }
        let last = segments.back().expect("one segment at least");
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, last.start))
            .map_err(io)?;
        if held > 0 {
            tracing::info!(
                "spool {}: {held} samples spooled before the restart wait to be sent",
                dir.display()
            );
        }
        let disk = Disk {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            written: last.end,
            segments,
            file,
            buffer: Vec::new(),
            acked,
            acked_dirty: false,
            cursor: acked,
            taken: VecDeque::new(),
            held,
            reader: None,
            acked_file,
        };
        Ok((disk, origin))
    }

    /// A segment's size before a new one starts: an eighth of the bound, so that dropping
    /// the oldest loses little, within reason.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(64 * 1024, 64 * 1024 * 1024)
    }

    fn end(&self) -> u64 {
        self.segments.back().expect("a segment").end
    }

    /// Writes the buffered records to the last segment.
    fn write_buffer(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        match self.file.write_all(&self.buffer) {
            Ok(()) => {
                self.written += self.buffer.len() as u64;
                self.buffer.clear();
            }
            // Kept in memory and tried again: the records are not lost while the host runs.
            Err(e) => tracing::error!(
                "spool {}: {e}; {} bytes kept in memory",
                self.dir.display(),
                self.buffer.len()
            ),
        }
    }

    /// Starts a new segment at the end.
    fn roll(&mut self) {
        self.write_buffer();
        if !self.buffer.is_empty() {
            return;
        }
        let start = self.end();
        let path = segment_path(&self.dir, start);
        match OpenOptions::new().append(true).create(true).open(&path) {
            Ok(file) => {
                self.file = file;
                self.segments.push_back(Segment {
                    start,
                    end: start,
                    records: 0,
                });
            }
            Err(e) => tracing::error!("spool {}: {e}", path.display()),
        }
    }

    /// Drops the oldest segment nothing was taken from (never the last); how many records
    /// it held, or None if there is none.
    fn drop_oldest(&mut self) -> Option<u64> {
        let last = self.segments.len() - 1;
        let at = self
            .segments
            .iter()
            .take(last)
            .position(|s| s.start >= self.cursor)?;
        let segment = self.segments.remove(at).expect("a segment");
        let _ = fs::remove_file(segment_path(&self.dir, segment.start));
        if matches!(self.reader, Some((start, ..)) if start == segment.start) {
            self.reader = None;
        }
        self.held -= segment.records;
        Some(segment.records)
    }

    /// Deletes the segments the destination has, but the last.
    fn forget_acked(&mut self) {
        while self.segments.len() > 1 && self.segments[0].end <= self.acked {
            let segment = self.segments.pop_front().expect("a segment");
            if matches!(self.reader, Some((start, ..)) if start == segment.start) {
                self.reader = None;
            }
            if let Err(e) = fs::remove_file(segment_path(&self.dir, segment.start)) {
                tracing::warn!("spool {}: {e}", self.dir.display());
            }
        }
    }

    /// Reads the record at the cursor (written out already); None past the end.
    fn read_next(&mut self) -> Option<Record> {
        loop {
            let at = self.segments.iter().position(|s| s.end > self.cursor)?;
            let segment = &self.segments[at];
            // A dropped segment leaves a gap: go on at the next one.
            self.cursor = self.cursor.max(segment.start);
            let (start, end) = (segment.start, segment.end);
            if self.cursor >= self.written {
                return None;
            }
            match self.read_at(start) {
                Ok(Some((time, body))) => {
                    let id = self.cursor;
                    self.cursor += HEADER + 8 + body.len() as u64;
                    return Some(Record { id, time, body });
                }
                Ok(None) | Err(_) => {
                    // Damaged since it was scanned: say so and skip the rest of the segment.
                    tracing::error!(
                        "spool {}: segment {start} unreadable at {}; skipping its rest",
                        self.dir.display(),
                        self.cursor
                    );
                    self.held = self.held.saturating_sub(1);
                    self.reader = None;
                    self.cursor = end;
                }
            }
        }
    }

    /// The frame at the cursor in the segment starting at `start`.
    fn read_at(&mut self, start: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
        let cursor = self.cursor;
        let reader = match &mut self.reader {
            Some((s, at, reader)) if *s == start && *at == cursor => reader,
            _ => {
                let mut file = File::open(segment_path(&self.dir, start))?;
                file.seek(SeekFrom::Start(cursor - start))?;
                &mut self.reader.insert((start, cursor, BufReader::new(file))).2
            }
        };
        let frame = read_frame(reader)?;
        if let (Some((_, at, _)), Some((_, body))) = (&mut self.reader, &frame) {
            *at = cursor + HEADER + 8 + body.len() as u64;
        }
        Ok(frame)
    }
}

impl Keep for Disk {
    fn push(&mut self, time: u64, body: &[u8]) -> (u64, bool) {
        let last = self.segments.back().expect("a segment");
        if last.end - last.start >= self.segment_bytes() {
            self.roll();
        }
        let was_clean = self.buffer.is_empty();
        let length = (8 + body.len()) as u32;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&time.to_le_bytes());
        crc.update(body);
        self.buffer.extend_from_slice(&length.to_le_bytes());
        self.buffer.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buffer.extend_from_slice(&time.to_le_bytes());
        self.buffer.extend_from_slice(body);
        let last = self.segments.back_mut().expect("a segment");
        last.end += HEADER + u64::from(length);
        last.records += 1;
        self.held += 1;
        if self.buffer.len() >= BUFFER {
            self.write_buffer();
        }
        let mut dropped = 0;
        while self.end() - self.segments[0].start > self.max_bytes {
            match self.drop_oldest() {
                Some(n) => dropped += n,
                None => break,
            }
        }
        (dropped, was_clean && !self.buffer.is_empty())
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        if self.cursor < self.end() {
            self.write_buffer();
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(record) = self.read_next() else {
                break;
            };
            self.taken.push_back(self.cursor);
            out.push(record);
        }
        out
    }

    fn ack(&mut self, n: usize) -> bool {
        let mut acked = 0;
        for _ in 0..n {
            let Some(end) = self.taken.pop_front() else {
                break;
            };
            self.acked = end;
            acked += 1;
        }
        self.held = self.held.saturating_sub(acked);
        self.forget_acked();
        let was_clean = !self.acked_dirty;
        self.acked_dirty = true;
        was_clean
    }

    fn rewind(&mut self) {
        self.taken.clear();
        self.cursor = self.acked;
        self.reader = None;
    }

    fn held(&self) -> u64 {
        self.held
    }

    fn taken(&self) -> usize {
        self.taken.len()
    }

    fn ready(&self) -> bool {
        self.cursor < self.end()
    }

    fn oldest_time(&mut self) -> Option<u64> {
        if self.held == 0 {
            return None;
        }
        let segment = self.segments.iter().find(|s| s.end > self.acked)?;
        let at = self.acked.max(segment.start);
        let mut time = [0u8; 8];
        if at >= self.written {
            let offset = (at - self.written + HEADER) as usize;
            time.copy_from_slice(self.buffer.get(offset..offset + 8)?);
        } else {
            let file = File::open(segment_path(&self.dir, segment.start)).ok()?;
            file.read_exact_at(&mut time, at - segment.start + HEADER)
                .ok()?;
        }
        Some(u64::from_le_bytes(time))
    }

    fn sync(&mut self) {
        self.write_buffer();
        if self.acked_dirty {
            match self.acked_file.write_all_at(&self.acked.to_le_bytes(), 0) {
                Ok(()) => self.acked_dirty = false,
                Err(e) => tracing::error!("spool {}: acked: {e}", self.dir.display()),
            }
        }
    }

    fn set_limit(&mut self, limit: u64) {
        self.max_bytes = limit.max(1);
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.spool"))
}

/// Reads one frame: (time, body), or None at a clean end or a damaged frame.
fn read_frame(reader: &mut impl Read) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut header = [0u8; 16];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let time = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if !(8..=16 * 1024 * 1024).contains(&length) {
        return Ok(None);
    }
    let mut body = vec![0u8; length - 8];
    match reader.read_exact(&mut body) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut check = crc32fast::Hasher::new();
    check.update(&header[8..16]);
    check.update(&body);
    if check.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((time, body)))
}

/// What a segment holds, found at start.
struct Scan {
    /// Bytes of whole, intact records from its start.
    good: u64,
    records: u64,
    /// Records at or after `acked`.
    unacked: u64,
}

/// Reads a segment through, cutting a torn or damaged tail off with one line.
fn scan(path: &Path, start: u64, acked: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let mut scan = Scan {
        good: 0,
        records: 0,
        unacked: 0,
    };
    while let Some((_, body)) = read_frame(&mut reader)? {
        if start + scan.good >= acked {
            scan.unacked += 1;
        }
        scan.good += HEADER + 8 + body.len() as u64;
        scan.records += 1;
    }
    if scan.good < size {
        tracing::warn!(
            "spool {}: a torn tail of {} bytes cut off after {} whole records",
            path.display(),
            size - scan.good,
            scan.records
        );
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(scan.good)?;
    }
    Ok(scan)
}
