//! The store as the state file and its log left it: the snapshot loaded (a bad one moved
//! aside, never overwritten), then the write-ahead log replayed over it, each record applied
//! only if its key's snapshot lacks it, and the log attached for what comes.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::journal::{self, Fsync, Journal, JournalError, Replayed};
use crate::store::snapshot::{self, SnapshotError};
use crate::{Config, Server};

/// The server `state` (and its log) hold, logging to that log from now on.
pub(crate) fn recover(state: &Path, config: Config, policy: Fsync) -> Result<Server, JournalError> {
    let server = load_snapshot(state, config);
    let replayed = replay_log(&server, state, policy)?;
    if replayed.records > 0 {
        tracing::info!(
            "write-ahead log: {} samples replayed ({} already in the snapshot)",
            replayed.applied,
            replayed.records - replayed.applied
        );
    }
    Ok(server)
}

/// Loads the snapshot; a missing one starts empty, a bad one is moved aside and the server
/// starts empty (the log still replays what it holds).
fn load_snapshot(path: &Path, config: Config) -> Server {
    match snapshot::load(path, config.clone()) {
        Ok(server) => {
            tracing::info!("loaded {} keys from {}", server.key_count(), path.display());
            server
        }
        Err(SnapshotError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            tracing::info!("no snapshot at {} yet; starting empty", path.display());
            Server::new(config)
        }
        Err(e) => {
            match snapshot::move_aside(path) {
                Ok(to) => tracing::error!("{e}; moved it to {} and starting empty", to.display()),
                Err(m) => tracing::error!("{e}; could not move it aside ({m}); starting empty"),
            }
            Server::new(config)
        }
    }
}

/// Replays `STATE.wal.old` (a snapshot that did not finish) and `STATE.wal` into `server`,
/// cuts a torn tail off, and attaches a journal that appends to the log from there on.
pub(crate) fn replay_log(
    server: &Server,
    state: &Path,
    policy: Fsync,
) -> Result<Replayed, JournalError> {
    let path = Journal::path_for(state);
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    let mut replayed = Replayed::default();
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
        let (whole, cut) = journal::replay(&data, &mut replayed, |seq, time, key, value| {
            server.replay_sample(seq, time, key, value)
        });
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
    let journal = Journal::open(&path, policy).map_err(|source| JournalError::Write {
        path: path.clone(),
        source,
    })?;
    server.attach_journal(Arc::new(journal));
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::snapshot;

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
        let replayed = replay_log(&server, state, Fsync::Always).unwrap();
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
        // `always`: every set above is on disk already.
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
        a.rotate_journal().unwrap();
        a.set("k", "3", Some(3)).unwrap();
        a.rotate_journal().unwrap(); // a second try adds to the old log
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
