//! The store on disk, so that a restart loses nothing.
//!
//! A snapshot is text: a header line, one `TIME KEY VALUE` line per sample (each key's
//! samples oldest first, so loading them in order rebuilds the same history), and a
//! trailer with the number of samples and a CRC-32 of every line between. A file without a
//! whole trailer, or whose lines do not add up, is corrupt. Values never hold `\n`.
//! Writing is atomic: a temporary file, fsync, rename, fsync of the directory.
//!
//! Version 2 adds, before the samples of a key the write-ahead log has seen, a line
//! `# seq N KEY`: the log's sequence number of its newest sample, so that replaying the log
//! over the snapshot applies exactly what the snapshot lacks (see `journal`). Version 1
//! files load as before.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::store::server::unix_now;
use crate::{Config, Server};
use spud_plugin_api::is_valid_key;

const HEADER_V1: &[u8] = b"# spud snapshot v1\n";
const HEADER: &[u8] = b"# spud snapshot v2\n";
const SEQ: &[u8] = b"# seq ";
const TRAILER: &[u8] = b"# end ";

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a whole, valid snapshot.
    #[error("{path} is not a valid snapshot: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Writes every key's history to `path`, atomically. Returns the number of samples. With
/// a write-ahead log, the log is rotated first and compacted once the snapshot is safe.
pub fn save(server: &Server, path: &Path) -> Result<u64, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    server.rotate_journal().map_err(io_err)?;
    let samples = write(server, path)?;
    if let Some(journal) = server.journal() {
        journal.compacted();
    }
    Ok(samples)
}

fn write(server: &Server, path: &Path) -> Result<u64, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = tmp_path(path);
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(HEADER)?;
        let mut crc = crc32fast::Hasher::new();
        let mut samples = 0u64;
        let mut chunk = Vec::new();
        // Each shard is copied under its lock, then encoded and written with no lock held.
        let mut result = Ok(());
        server.keyspace().for_each_shard_copied(|entries| {
            chunk.clear();
            for (seq, history) in entries {
                let key = std::str::from_utf8(history.label()).expect("keys are text");
                if seq > 0 {
                    chunk.extend_from_slice(SEQ);
                    chunk.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
                    chunk.push(b' ');
                    chunk.extend_from_slice(key.as_bytes());
                    chunk.push(b'\n');
                }
                for (time, value) in history.oldest_first() {
                    chunk.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
                    chunk.push(b' ');
                    chunk.extend_from_slice(key.as_bytes());
                    chunk.push(b' ');
                    value.write_text(&mut chunk);
                    chunk.push(b'\n');
                    samples += 1;
                }
            }
            if result.is_ok() {
                crc.update(&chunk);
                result = out.write_all(&chunk);
            }
        });
        result?;
        writeln!(out, "# end {samples} {:08x}", crc.finalize())?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(samples)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// Loads the snapshot at `path` into a new server. Nothing is loaded unless the whole
/// file checks out.
pub fn load(path: &Path, config: Config) -> Result<Server, SnapshotError> {
    let data = fs::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let body = data
        .strip_prefix(HEADER)
        .or_else(|| data.strip_prefix(HEADER_V1))
        .ok_or_else(|| corrupt("it does not start with the snapshot header".into()))?;
    let (body, trailer) = split_trailer(body)
        .ok_or_else(|| corrupt("it has no end line: it was cut short".into()))?;
    let (count, crc) =
        parse_trailer(trailer).ok_or_else(|| corrupt("its end line is damaged".into()))?;
    if crc32fast::hash(body) != crc {
        return Err(corrupt("its checksum does not match its contents".into()));
    }
    let server = Server::new(config);
    let lines = body.strip_suffix(b"\n").unwrap_or(body);
    // Each key's lines are together: the file is loaded in parts cut between keys, one
    // thread each, and each key's samples go in under one lock.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let parts = split_between_keys(lines, threads);
    let loaded = std::thread::scope(|scope| {
        let running: Vec<_> = parts
            .iter()
            .map(|&part| scope.spawn(|| load_part(&server, part)))
            .collect();
        running
            .into_iter()
            .map(|r| r.join().expect("a snapshot loader does not panic"))
            .collect::<Vec<_>>()
    });
    let mut samples = 0u64;
    for result in loaded {
        match result {
            Ok(n) => samples += n,
            Err(Bad { line, seq }) => {
                // The line's number within the file: the header is line 1.
                let offset = line.as_ptr() as usize - body.as_ptr() as usize;
                let n = body[..offset].iter().filter(|&&b| b == b'\n').count() + 2;
                let form = if seq { "# seq N KEY" } else { "TIME KEY VALUE" };
                return Err(corrupt(format!("line {n} is not `{form}`")));
            }
        }
    }
    if samples != count {
        return Err(corrupt(format!(
            "it holds {samples} samples but its end line says {count}"
        )));
    }
    Ok(server)
}

/// A line that does not parse, and whether it was a `# seq` line.
struct Bad<'a> {
    line: &'a [u8],
    seq: bool,
}

/// Cuts `lines` into about `parts` pieces, each cut at the start of a line whose key differs
/// from the line before (or a `# seq` line), so that no key's samples are in two pieces.
fn split_between_keys(lines: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..parts {
        let target = (lines.len() * i / parts).max(start);
        let Some(cut) = next_key_start(lines, target) else {
            break;
        };
        pieces.push(&lines[start..cut - 1]); // without the line break before the cut
        start = cut;
    }
    pieces.push(&lines[start..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

/// The first line start at or after `from` where a new key begins (just after a line break).
fn next_key_start(lines: &[u8], from: usize) -> Option<usize> {
    let key_of = |line: &[u8]| -> Option<Vec<u8>> {
        let rest = &line[line.iter().position(|&b| b == b' ')? + 1..];
        Some(rest[..rest.iter().position(|&b| b == b' ')?].to_vec())
    };
    let mut at = from + memchr::memchr(b'\n', &lines[from..])? + 1;
    let line_at = |at: usize| {
        let end = memchr::memchr(b'\n', &lines[at..]).map_or(lines.len(), |e| at + e);
        &lines[at..end]
    };
    let mut previous = key_of(line_at(at)).filter(|_| !line_at(at).starts_with(SEQ));
    loop {
        if at >= lines.len() {
            return None;
        }
        let line = line_at(at);
        if line.starts_with(SEQ) || key_of(line) != previous {
            return Some(at);
        }
        previous = key_of(line);
        at += line.len() + 1;
    }
}

/// Loads one piece; returns its number of samples. A key is checked once per run of its
/// lines, not once per line.
fn load_part<'a>(server: &Server, part: &'a [u8]) -> Result<u64, Bad<'a>> {
    let mut samples = 0u64;
    let mut run: Vec<(u64, &[u8])> = Vec::with_capacity(128);
    let mut run_key: &[u8] = b"";
    for line in part.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(SEQ) {
            let (seq, key) = parse_seq(rest).ok_or(Bad { line, seq: true })?;
            server.set_seq(key, seq);
            continue;
        }
        let bad = || Bad { line, seq: false };
        let (time, rest) = split_time(line).ok_or_else(bad)?;
        let sp = memchr::memchr(b' ', rest).ok_or_else(bad)?;
        let (key, value) = (&rest[..sp], &rest[sp + 1..]);
        if key != run_key {
            let valid = std::str::from_utf8(key).ok().filter(|k| is_valid_key(k));
            valid.ok_or_else(bad)?;
            server.load_samples(as_key(run_key), &run);
            run.clear();
            run_key = key;
        }
        run.push((time, value));
        samples += 1;
    }
    server.load_samples(as_key(run_key), &run);
    Ok(samples)
}

/// A key checked by `load_part` (or the empty one it starts with).
fn as_key(key: &[u8]) -> &str {
    std::str::from_utf8(key).expect("checked when its run began")
}

/// `TIME ` at the start of a line: the time, and the rest of the line.
fn split_time(line: &[u8]) -> Option<(u64, &[u8])> {
    let sp = memchr::memchr(b' ', line)?;
    let digits = &line[..sp];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let time = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((time, &line[sp + 1..]))
}

/// Moves a bad snapshot out of the way without overwriting anything; returns where it went.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = unix_now();
    for n in 0.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let target = PathBuf::from(name);
        if !target.exists() {
            fs::rename(path, &target)?;
            return Ok(target);
        }
    }
    unreachable!("some name is free")
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(name)
}

/// Splits off the last line, which must be the trailer and end in `\n`.
fn split_trailer(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let without_nl = body.strip_suffix(b"\n")?;
    let start = without_nl
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let trailer = &without_nl[start..];
    trailer
        .starts_with(TRAILER)
        .then(|| (&body[..start], &trailer[TRAILER.len()..]))
}

fn parse_trailer(t: &[u8]) -> Option<(u64, u32)> {
    let t = std::str::from_utf8(t).ok()?;
    let (count, crc) = t.split_once(' ')?;
    Some((count.parse().ok()?, u32::from_str_radix(crc, 16).ok()?))
}

fn parse_seq(rest: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(rest).ok()?;
    let (seq, key) = text.split_once(' ')?;
    is_valid_key(key).then_some((seq.parse().ok()?, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_sample_and_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let a = Server::new(Config::default());
        for i in 0..150u64 {
            a.set("k.num", i.to_string(), Some(1000 + i)).unwrap();
        }
        a.set("k.text", "  spaced value \r", Some(5)).unwrap();
        a.set("k.text", "", Some(4)).unwrap();
        a.set("k.bytes", b"\xff\x00ok".as_slice(), Some(6)).unwrap();
        assert_eq!(save(&a, &path).unwrap(), 103);

        let b = load(&path, Config::default()).unwrap();
        for key in ["k.num", "k.text", "k.bytes"] {
            assert_eq!(a.get(key), b.get(key), "{key}");
        }
        assert_eq!(b.get("k.num").unwrap().len(), 100);
    }

    #[test]
    fn pieces_are_cut_between_keys_only() {
        let lines = b"1 a x\n2 a y\n# seq 3 b\n1 b x\n2 b y\n3 b z\n1 c x\n1 d x\n2 d x";
        for parts in 1..12 {
            let pieces = split_between_keys(lines, parts);
            assert_eq!(pieces.join(&b'\n'), lines.to_vec(), "{parts} parts");
            let keys: Vec<Vec<&[u8]>> = pieces
                .iter()
                .map(|p| {
                    let mut keys: Vec<&[u8]> = p
                        .split(|&b| b == b'\n')
                        .map(|l| l.rsplitn(2, |&b| b == b' ').nth(1).unwrap())
                        .map(|l| l.rsplit(|&b| b == b' ').next().unwrap())
                        .collect();
                    keys.dedup();
                    keys
                })
                .collect();
            let all: Vec<&[u8]> = keys.concat();
            let mut unique = all.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(all.len(), unique.len(), "a key in two pieces: {keys:?}");
        }
    }

    #[test]
    fn truncated_or_altered_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let a = Server::new(Config::default());
        for i in 0..10 {
            a.set(&format!("k{i}"), "v", Some(1)).unwrap();
        }
        save(&a, &path).unwrap();
        let whole = fs::read(&path).unwrap();

        for cut in [0, 5, whole.len() / 2, whole.len() - 1] {
            fs::write(&path, &whole[..cut]).unwrap();
            assert!(
                matches!(
                    load(&path, Config::default()),
                    Err(SnapshotError::Corrupt { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut altered = whole.clone();
        let i = altered.windows(4).position(|w| w == b"k0 v").unwrap();
        altered[i + 3] = b'w';
        fs::write(&path, &altered).unwrap();
        let err = load(&path, Config::default()).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_version_1_snapshot_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let body = b"5 k.a 1\n6 k.a two words\n7 k.b \n";
        let mut file = b"# spud snapshot v1\n".to_vec();
        file.extend_from_slice(body);
        file.extend_from_slice(format!("# end 3 {:08x}\n", crc32fast::hash(body)).as_bytes());
        fs::write(&path, file).unwrap();
        let server = load(&path, Config::default()).unwrap();
        let a: Vec<_> = server
            .get("k.a")
            .unwrap()
            .into_iter()
            .map(|s| s.time)
            .collect();
        assert_eq!(a, vec![6, 5]);
        assert_eq!(server.get("k.b").unwrap()[0].value.as_bytes(), b"");
    }

    #[test]
    fn move_aside_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(&path, "one").unwrap();
        let first = move_aside(&path).unwrap();
        fs::write(&path, "two").unwrap();
        let second = move_aside(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read(first).unwrap(), b"one");
        assert_eq!(fs::read(second).unwrap(), b"two");
    }
}
