//! One file per verb.

pub mod alerts;
pub mod archive;
pub mod cmdshell;
pub mod control;
pub mod get;
pub mod range;
pub mod replicate;
pub mod rules;
pub mod set;
pub mod sub;
pub mod wrap;

/// A Unix time as people read it.
pub fn when(time: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(time))
        .to_string()
}

/// The wait before reconnecting: 1 s, doubling up to 30 s, and back to 1 s after a
/// connection that lasted a minute.
pub struct Backoff {
    next: std::time::Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            next: std::time::Duration::from_secs(1),
        }
    }

    /// How long to wait after a connection that lasted `lasted`.
    pub fn after(&mut self, lasted: std::time::Duration) -> std::time::Duration {
        use std::time::Duration;
        if lasted > Duration::from_secs(60) {
            self.next = Duration::from_secs(1);
        }
        let wait = self.next;
        self.next = (wait * 2).min(Duration::from_secs(30));
        wait
    }
}
