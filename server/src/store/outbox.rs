//! What is waiting to be written to one connection: its own replies and the pushes other
//! connections' sets send it, in one buffer so that their order is the order they happened.

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The line a subscriber that fell too far behind receives before it is disconnected.
pub(crate) const SLOW_SUBSCRIBER: &[u8] =
    b"ERR slow_subscriber Too many updates waiting to be read; disconnected\r\n";

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: there is something to write, or the outbox closed.
    ready: Notify,
    /// Wakes the reader: the writer emptied the buffer.
    drained: Notify,
    /// Cancelled when the connection must end now (it fell behind on pushes).
    cut_off: CancellationToken,
    max_pending_pushes: usize,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// Bytes of pushes added since the writer last took the buffer.
    pushed: usize,
    closed: bool,
    /// Held back until the write-ahead log has this batch on disk (`fsync = always`).
    held: bool,
}

/// What became of a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The subscriber was too far behind: it got `ERR slow_subscriber` and is being closed.
    CutOff,
    Closed,
}

impl Outbox {
    pub(crate) fn new(max_pending_pushes: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            drained: Notify::new(),
            cut_off: CancellationToken::new(),
            max_pending_pushes,
        }
    }

    /// Queues part of this connection's own reply; the reader wakes the writer per batch.
    #[inline]
    pub(crate) fn reply(&self, parts: &[&[u8]]) {
        let mut state = self.state.lock();
        for part in parts {
            state.buf.extend_from_slice(part);
        }
    }

    /// Queues a push from any connection. A subscriber that lets more than the bound of
    /// pushes pile up is cut off rather than allowed to grow without limit.
    pub(crate) fn push(&self, line: &[u8]) -> Pushed {
        let mut state = self.state.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if state.pushed + line.len() > self.max_pending_pushes {
            // The writer drops what is queued and sends SLOW_SUBSCRIBER instead.
            state.buf.clear();
            state.closed = true;
            drop(state);
            self.cut_off.cancel();
            self.ready.notify_one();
            return Pushed::CutOff;
        }
        let was_empty = state.buf.is_empty();
        state.buf.extend_from_slice(line);
        state.pushed += line.len();
        drop(state);
        // A non-empty buffer means the writer is already due to come back for it.
        if was_empty {
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// Holds everything queued and to come until `release`: acknowledgements wait for the
    /// disk. Returns the buffer's length, where this connection's next reply will start.
    pub(crate) fn hold(&self) -> usize {
        let mut state = self.state.lock();
        state.held = true;
        state.buf.len()
    }

    /// Where this connection's next reply will start in the held buffer.
    pub(crate) fn held_len(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// Lets the writer send what was held.
    pub(crate) fn release(&self) {
        self.state.lock().held = false;
        self.ready.notify_one();
    }

    /// The samples were not made durable: each acknowledgement at `acks` (an `OK \r\n` of
    /// a `set`, or nothing for a `qset`) becomes `error`; then the writer may send.
    pub(crate) fn release_refusing(&self, acks: &[(usize, bool)], error: &[u8]) {
        let mut state = self.state.lock();
        let old = std::mem::take(&mut state.buf);
        let mut at = 0;
        for &(offset, had_ok) in acks {
            state.buf.extend_from_slice(&old[at..offset]);
            state.buf.extend_from_slice(error);
            at = if had_ok {
                offset + b"OK \r\n".len()
            } else {
                offset
            };
        }
        state.buf.extend_from_slice(&old[at..]);
        state.held = false;
        drop(state);
        self.ready.notify_one();
    }

    pub(crate) fn wake_writer(&self) {
        self.ready.notify_one();
    }

    pub(crate) fn pending(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// No more replies or pushes; the writer finishes what is queued and ends.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }

    pub(crate) fn cut_off(&self) -> &CancellationToken {
        &self.cut_off
    }

    /// Swaps the queued bytes into `into` (which must be empty). Returns false once the
    /// outbox is closed and nothing is left.
    pub(crate) async fn take(&self, into: &mut Vec<u8>) -> bool {
        loop {
            {
                let mut state = self.state.lock();
                if !state.buf.is_empty() && !state.held {
                    std::mem::swap(&mut state.buf, into);
                    state.pushed = 0;
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.ready.notified().await;
        }
    }

    pub(crate) fn written(&self) {
        self.drained.notify_one();
    }

    /// Waits until the writer has caught up below `limit` bytes.
    pub(crate) async fn wait_below(&self, limit: usize) {
        while self.pending() > limit && !self.cut_off.is_cancelled() {
            let drained = self.drained.notified();
            if self.pending() <= limit {
                break;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_pushes_keep_their_order() {
        let o = Outbox::new(1000);
        o.reply(&[b"OK a\r\n"]);
        assert_eq!(o.push(b"SET 1 k v\r\n"), Pushed::Queued);
        o.reply(&[b"OK ", b"\r\n"]);
        let mut buf = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(o.take(&mut buf)));
        assert_eq!(buf, b"OK a\r\nSET 1 k v\r\nOK \r\n");
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_cut_off() {
        let o = Outbox::new(20);
        assert_eq!(o.push(b"SET 1 k 1234567\r\n"), Pushed::Queued);
        assert_eq!(o.push(b"SET 1 k 1234567\r\n"), Pushed::CutOff);
        assert!(o.cut_off().is_cancelled());
        assert_eq!(o.push(b"SET 1 k 1\r\n"), Pushed::Closed);
        let mut buf = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(!rt.block_on(o.take(&mut buf)), "what was queued is dropped");
    }
}
