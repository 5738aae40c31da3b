//! Keeping the write-ahead log small: a snapshot every interval, and early whenever the log
//! outgrows its bound (twice the last snapshot, at least [`MIN_LOG_BOUND`]). Each snapshot
//! rotates the log and removes the rotated part once the snapshot is safe, so the log never
//! holds much more than one interval, or one bound, of writes. Sets go on meanwhile: the
//! snapshot encodes one shard at a time and writes with no lock held.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::snapshot;
use crate::Server;

/// The log may always grow to this before a snapshot is taken early.
pub const MIN_LOG_BOUND: u64 = 64 << 20;

/// The log's bound after a snapshot of `snapshot_bytes`.
pub fn log_bound(snapshot_bytes: u64) -> u64 {
    snapshot_bytes.saturating_mul(2).max(MIN_LOG_BOUND)
}

/// Snapshots `server` into `path` every `every`, and early when its log passes its bound,
/// until `stop`.
pub(super) async fn run(server: Server, path: PathBuf, every: Duration, stop: CancellationToken) {
    let Some(journal) = server.journal().cloned() else {
        return;
    };
    journal.set_bound(log_bound(file_len(&path)));
    let mut due = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
            _ = journal.outgrown() => {
                if journal.len() < journal.bound() {
                    continue; // said before the last snapshot rotated it
                }
                tracing::info!(
                    "the write-ahead log passed {} MiB: snapshot taken early",
                    journal.bound() >> 20
                );
            }
        }
        due = tokio::time::Instant::now() + every;
        save(server.clone(), path.clone()).await;
    }
}

/// Writes a snapshot off the runtime's threads, says how it went, and sets the log's next
/// bound from its size.
pub(super) async fn save(server: Server, path: PathBuf) {
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let samples = snapshot::save(&server, &path)?;
        if let Some(journal) = server.journal() {
            journal.set_bound(log_bound(file_len(&path)));
        }
        Ok::<_, snapshot::SnapshotError>(samples)
    })
    .await;
    match result {
        Ok(Ok(samples)) => tracing::info!(
            "snapshot written: {samples} samples in {:?}",
            started.elapsed()
        ),
        Ok(Err(e)) => tracing::error!("snapshot not written, the previous one is kept: {e}"),
        Err(e) => tracing::error!("snapshot task failed: {e}"),
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_twice_the_snapshot_and_never_below_the_minimum() {
        assert_eq!(log_bound(0), MIN_LOG_BOUND);
        assert_eq!(log_bound(MIN_LOG_BOUND), 2 * MIN_LOG_BOUND);
    }

    #[tokio::test]
    async fn a_log_past_its_bound_is_compacted_before_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let server = Server::new(crate::Config::default());
        crate::store::recovery::replay_log(&server, &state, crate::store::journal::Fsync::No)
            .unwrap();
        let journal = server.journal().cloned().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            server.clone(),
            state.clone(),
            Duration::from_secs(3600),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        journal.set_bound(4096); // as if the last snapshot were tiny
        for i in 0..2000u64 {
            server.set("k.x", i.to_string(), Some(i)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !state.exists() {
            assert!(Instant::now() < deadline, "no early snapshot");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert!(journal.len() < 4096 * 2, "log {} bytes", journal.len());
    }
}
