//! A stop that the host's threads wait on beside their other sources with crossbeam's
//! `select!`: a channel nothing is ever sent on, which disconnects once stopped. A waiting
//! thread wakes at that moment, not at its next poll.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

/// Nothing is ever sent: only the disconnection says something.
enum Never {}

/// Stops once; everyone waiting on it wakes.
pub struct Stop {
    waiting: Receiver<Never>,
    alive: Mutex<Option<Sender<Never>>>,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        let (alive, waiting) = crossbeam_channel::bounded(0);
        Arc::new(Stop {
            waiting,
            alive: Mutex::new(Some(alive)),
        })
    }

    pub fn stop(&self) {
        self.alive.lock().take();
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.waiting.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Waits `d`, or until this stops; true if it did.
    pub fn wait(&self, d: Duration) -> bool {
        select! {
            recv(self.waiting) -> _ => true,
            default(d) => false,
        }
    }

    /// Waits `d`, or until this or `other` stops; true if either did.
    pub fn wait_either(&self, other: &Stop, d: Duration) -> bool {
        select! {
            recv(self.waiting) -> _ => true,
            recv(other.waiting) -> _ => true,
            default(d) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_either_stops_and_not_before() {
        let (host, helper) = (Stop::new(), Stop::new());
        let started = std::time::Instant::now();
        assert!(!helper.wait_either(&host, Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        let stopper = Arc::clone(&host);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stopper.stop();
        });
        let started = std::time::Instant::now();
        assert!(helper.wait_either(&host, Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(host.is_stopped() && !helper.is_stopped());
        assert!(
            host.wait(Duration::from_secs(10)),
            "a stopped stop waits no more"
        );
    }
}
