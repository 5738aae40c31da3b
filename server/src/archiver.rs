//! The archive inside the server (`--archive DIR`): every key's numeric samples written to
//! its RRD file (`spud_archive`: the layout and names `spud archive` writes, which `rrdtool`
//! reads), with no subscription and no client. Every few seconds the archiver asks the store
//! which keys changed (a count the set path takes anyway); a key is written `flush` (60 s
//! unless set) after its first change since its last write, all its new samples in one
//! update, as `spud archive` batches them: a file opened once a minute, not at every sample.
//! At most `KEYS_PER_TICK` keys a look, the rest waiting their turn: bounded work, whatever
//! the rate of sets. The samples wait in the store's history, which ranges read anyway; a
//! key set more often than its history holds loses nothing, for the store keeps what the
//! history drops unread for the archiver (`Spill`). At start it looks at every stored key
//! once (what a snapshot brought back), and at a stop it writes what waits.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use spud_archive::{Archive, Place};
use tokio_util::sync::CancellationToken;

use crate::{Pattern, Server};

/// How often the archiver looks for changed keys.
/// (Keys remember when they first changed, so a look every few seconds loses nothing, and an
/// idle server wakes the archiver rarely.)
const TICK: Duration = Duration::from_secs(5);
/// Keys written per look, at most: 100,000 keys, each due once a minute, need 8,400.
const KEYS_PER_TICK: usize = 25_000;

/// Archives into `dir` until `stop`; a `dir` that cannot be archived into is said once.
/// The store keeps what a history drops unread from the call on, before the listeners
/// open, so no early set escapes the archive.
pub fn run(
    server: Server,
    place: Place,
    flush: Duration,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    server.start_archiving();
    async move {
        // The archiver's thread waits on a channel, not on the runtime's timers: it ends
        // cleanly even when the runtime goes first (a start that fails after it began). The
        // sender is dropped when the server stops, or with the runtime.
        let (stopped, woken) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move {
            stop.cancelled().await;
            drop(stopped);
        });
        let _ = tokio::task::spawn_blocking(move || archive(server, place, flush, woken)).await;
    }
}

fn archive(server: Server, place: Place, flush: Duration, woken: std::sync::mpsc::Receiver<()>) {
    let mut stopping = false;
    let dir = place.dir.clone();
    // Made on first start, as the state's folder is.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(
            "archive: cannot make {}: {e}; nothing is archived",
            dir.display()
        );
        return;
    }
    let mut archive = match Archive::open(place) {
        Ok(archive) => archive,
        Err(e) => {
            tracing::error!("archive: {e}; nothing is archived");
            return;
        }
    };
    tracing::info!("archiving every key into {}", dir.display());
    let all = Pattern::new("*").expect("a valid pattern");
    let mut cursor = server.change_cursor();
    let mut due = Due::default();
    // What a snapshot brought back: at once.
    let started = Instant::now() - flush;
    for (key, _) in server.get_matching(&all) {
        due.push(key, started);
    }
    loop {
        let now = Instant::now();
        for (key, _) in server.changed_since(&mut cursor, &all) {
            due.push(key, now);
        }
        let keys = if stopping {
            due.take(usize::MAX, None)
        } else {
            due.take(KEYS_PER_TICK, now.checked_sub(flush))
        };
        let mut dropped = 0;
        for key in keys {
            dropped += gather(&server, &mut archive, key);
        }
        if dropped > 0 {
            tracing::warn!(
                "archive: {dropped} samples were set faster than they could be archived, and \
                 not kept (more than {} waiting)",
                crate::store::spill::MAX_HELD
            );
        }
        let figures = archive.flush(|key, result| {
            if let Err(e) = result {
                tracing::warn!("archive: {key}: {e}");
            }
        });
        if let Some(e) = &figures.daemon_error {
            tracing::warn!(
                "archive: {e}; {} files written directly instead",
                figures.around_daemon
            );
        }
        if figures.written > 0 {
            tracing::debug!("archive: {figures}");
        }
        if stopping {
            return;
        }
        // Until the next look, or at once when the server stops: then one last look that
        // writes everything.
        stopping = matches!(
            woken.recv_timeout(TICK.min(flush)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}

/// Hands `archive` the samples of `key` newer than what it wrote of it; returns how many
/// samples of any key the store could not keep for it.
fn gather(server: &Server, archive: &mut Archive, key: String) -> u64 {
    let (mut samples, dropped) = server.take_unarchived(&key);
    if let Some(after) = archive.newest(&key) {
        samples.retain(|&(time, _)| time > after);
    }
    archive.add_all(key, samples);
    dropped
}

/// Keys waiting to be written, each once, in the order of their first change since their
/// last write.
#[derive(Default)]
struct Due {
    order: VecDeque<(String, Instant)>,
    queued: HashSet<String>,
}

impl Due {
    fn push(&mut self, key: String, changed: Instant) {
        if self.queued.insert(key.clone()) {
            self.order.push_back((key, changed));
        }
    }

    /// At most `n` keys that changed no later than `by` (None: any).
    fn take(&mut self, n: usize, by: Option<Instant>) -> Vec<String> {
        let mut keys = Vec::new();
        while keys.len() < n {
            match self.order.front() {
                Some((_, changed)) if by.is_none_or(|by| *changed <= by) => {
                    let (key, _) = self.order.pop_front().expect("a front");
                    self.queued.remove(&key);
                    keys.push(key);
                }
                _ => break,
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_due_once_in_the_order_they_first_changed() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let mut due = Due::default();
        due.push("a".into(), t0);
        due.push("b".into(), t0);
        due.push("a".into(), later);
        due.push("c".into(), later);
        assert_eq!(due.take(1, Some(t0)), ["a"]);
        assert_eq!(due.take(5, Some(t0)), ["b"]);
        assert_eq!(due.take(5, Some(t0)), Vec::<String>::new());
        due.push("a".into(), later);
        assert_eq!(due.take(5, None), ["c", "a"]);
    }
}
