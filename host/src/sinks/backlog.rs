//! Where a destination's samples wait until it has them: a spool directory when `spool` is
//! set (an outage and a restart meanwhile lose nothing), else a bounded buffer in memory.

use std::path::PathBuf;
use std::sync::Arc;

use spud_spool::Backlog;

/// A destination's `buffer`, `spool` and `spool_max`, its path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub spool: Option<PathBuf>,
    pub spool_max: u64,
    pub buffer: usize,
}

impl Waiting {
    /// A spool's bound unless `spool_max` says otherwise.
    pub const DEFAULT_SPOOL_MAX: u64 = 1 << 30;

    /// The backlog these settings ask for. `current` is kept when they ask for memory and
    /// it is memory (its bound changed); a spool open in this process is shared. A spool
    /// that cannot be opened is said in one line, and memory used instead.
    pub fn open(&self, destination: &str, current: Option<&Arc<Backlog>>) -> Arc<Backlog> {
        let memory = |current: Option<&Arc<Backlog>>| match current {
            Some(backlog) if !backlog.is_spool() => {
                backlog.set_limit(self.buffer as u64);
                Arc::clone(backlog)
            }
            _ => Backlog::memory(self.buffer),
        };
        let Some(dir) = &self.spool else {
            return memory(current);
        };
        match Backlog::spool(dir, self.spool_max) {
            Ok(backlog) => {
                if backlog.held() > 0 {
                    tracing::info!(
                        "{destination}: {} samples spooled in {} wait to be sent",
                        backlog.held(),
                        dir.display()
                    );
                }
                backlog
            }
            Err(e) => {
                tracing::error!(
                    "{destination}: {e}; keeping up to {} samples in memory instead",
                    self.buffer
                );
                memory(current)
            }
        }
    }
}

/// A backlog's figures under `<prefix>.`: held (`buffered`), on disk (`spooled`), dropped
/// and the age of the oldest in seconds (`oldest_age`).
pub fn figures(backlog: &Backlog, now: u64) -> [(&'static str, u64); 4] {
    let held = backlog.held();
    [
        ("buffered", held),
        ("spooled", if backlog.is_spool() { held } else { 0 }),
        ("dropped", backlog.dropped()),
        (
            "oldest_age",
            backlog.oldest_time().map_or(0, |t| now.saturating_sub(t)),
        ),
    ]
}
