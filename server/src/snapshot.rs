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

use crate::server::unix_now;
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
        // Encode one shard at a time under its lock; write with no lock held.
        let mut result = Ok(());
        server.keyspace().for_each_shard(|entries| {
            chunk.clear();
            for entry in entries {
                if entry.seq > 0 {
                    chunk.extend_from_slice(SEQ);
                    chunk.extend_from_slice(itoa::Buffer::new().format(entry.seq).as_bytes());
                    chunk.push(b' ');
                    chunk.extend_from_slice(entry.key().as_bytes());
                    chunk.push(b'\n');
                }
                for (time, value) in entry.history().oldest_first() {
                    chunk.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
                    chunk.push(b' ');
                    chunk.extend_from_slice(entry.key().as_bytes());
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
    let mut samples = 0u64;
    let lines = body.strip_suffix(b"\n").unwrap_or(body);
    for (n, line) in lines.split(|&b| b == b'\n').enumerate() {
        if body.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix(SEQ) {
            let (seq, key) = parse_seq(rest)
                .ok_or_else(|| corrupt(format!("line {} is not `# seq N KEY`", n + 2)))?;
            server.set_seq(key, seq);
            continue;
        }
        let (time, key, value) = parse_line(line)
            .ok_or_else(|| corrupt(format!("line {} is not TIME KEY VALUE", n + 2)))?;
        server.set_unchecked(key, value, time);
        samples += 1;
    }
    if samples != count {
        return Err(corrupt(format!(
            "it holds {samples} samples but its end line says {count}"
        )));
    }
    Ok(server)
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

pub(crate) fn parse_line(line: &[u8]) -> Option<(u64, &str, &[u8])> {
    let sp = line.iter().position(|&b| b == b' ')?;
    let time = std::str::from_utf8(&line[..sp]).ok()?.parse().ok()?;
    let rest = &line[sp + 1..];
    let sp = rest.iter().position(|&b| b == b' ')?;
    let key = std::str::from_utf8(&rest[..sp]).ok()?;
    is_valid_key(key).then_some((time, key, &rest[sp + 1..]))
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
