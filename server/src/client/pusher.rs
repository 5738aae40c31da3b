//! Pushing samples into a remote stat server (spud-host's remote sink, `spud replicate`):
//! pipelined `set TIME KEY VALUE`, reconnecting with backoff. Samples wait in a bounded buffer while the server is away and go out with
//! their original times when it is back. `set` rather than `qset`: each `OK` acknowledges one
//! sample, so a sample written into a connection that then died is sent again, not lost.
//! When the buffer is full the oldest samples are dropped, counted and logged. It can be
//! pointed at another server while it runs (`retarget`): what is buffered for the old one,
//! acknowledged or not, goes to the new one.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::client::endpoint::{Connection, Endpoint};

/// Samples sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 10_000;

/// A buffered, acknowledged pusher to one server.
pub struct Pusher {
    endpoint: Mutex<Endpoint>,
    capacity: AtomicUsize,
    state: Mutex<State>,
    changed: Condvar,
    dropped: AtomicU64,
    sent: AtomicU64,
    connected: AtomicBool,
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Not yet sent, oldest first.
    waiting: VecDeque<String>,
    /// Sent, awaiting their `OK`, oldest first.
    in_flight: VecDeque<String>,
    /// Bumped when a connection ends, so the writer knows to reconnect.
    broken: u64,
    /// Bumped when the endpoint changes, so the writer leaves the old server.
    target: u64,
}

impl Pusher {
    /// Starts the sender thread.
    pub fn start(addr: Endpoint, capacity: usize) -> Arc<Pusher> {
        let sink = Arc::new(Pusher {
            endpoint: Mutex::new(addr),
            capacity: AtomicUsize::new(capacity.max(1)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let worker = Arc::clone(&sink);
        std::thread::Builder::new()
            .name("pusher".into())
            .spawn(move || worker.run())
            .expect("spawn the pusher");
        sink
    }

    /// Queues one sample; the oldest waiting one is dropped (and counted) when full.
    pub fn push(&self, key: &str, value: &str, time: u64) {
        let line = format!("set {time} {key} {value}\r\n");
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut state = self.state.lock();
        if state.waiting.len() + state.in_flight.len() >= capacity {
            state.waiting.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "remote server {} is away and the buffer of {capacity} samples is full: {dropped} oldest samples dropped so far",
                    self.endpoint()
                );
            }
        }
        state.waiting.push_back(line);
        drop(state);
        self.changed.notify_all();
    }

    /// The server it sends to now.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.lock().clone()
    }

    /// Sends to `endpoint` from now on, keeping at most `capacity` samples while it is
    /// away. What waits, and what the old server has not acknowledged, goes to the new one
    /// (a sample the old one took but had not yet acknowledged reaches both).
    pub fn retarget(&self, endpoint: Endpoint, capacity: usize) {
        let old = std::mem::replace(&mut *self.endpoint.lock(), endpoint);
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
        self.state.lock().target += 1;
        self.changed.notify_all();
        tracing::info!(
            "remote server: switching from {old} to {} with {} samples buffered",
            self.endpoint(),
            self.buffered()
        );
    }

    /// Samples waiting or unacknowledged.
    pub fn buffered(&self) -> usize {
        let s = self.state.lock();
        s.waiting.len() + s.in_flight.len()
    }

    /// Samples the server acknowledged.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Samples dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether it is connected now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Waits up to `within` for the buffer to empty, then stops the sender.
    pub fn flush_and_stop(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        let mut state = self.state.lock();
        while state.waiting.len() + state.in_flight.len() > 0 {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                tracing::warn!(
                    "{} samples for {} not delivered at shutdown",
                    state.waiting.len() + state.in_flight.len(),
                    self.endpoint()
                );
                break;
            }
        }
        drop(state);
        self.stopping.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut said_down = false;
        while !self.stopping.load(Ordering::Relaxed) {
            let target = self.state.lock().target;
            let endpoint = self.endpoint();
            match endpoint.connect() {
                Ok(stream) => {
                    if said_down {
                        tracing::info!(
                            "remote server {endpoint} is back; sending {} buffered samples",
                            self.buffered()
                        );
                    }
                    said_down = false;
                    backoff = Duration::from_millis(100);
                    self.connected.store(true, Ordering::Relaxed);
                    if let Err(e) = self.serve(stream) {
                        tracing::warn!("remote server {endpoint}: {e}; buffering until it is back");
                        said_down = true;
                    }
                    self.connected.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    if !said_down {
                        tracing::warn!(
                            "remote server {endpoint} unreachable: {e}; buffering up to {} samples",
                            self.capacity.load(Ordering::Relaxed)
                        );
                        said_down = true;
                    }
                    // A wait that a retarget cuts short (a new sample does not).
                    let until = std::time::Instant::now() + backoff;
                    let mut state = self.state.lock();
                    while state.target == target
                        && !self.changed.wait_until(&mut state, until).timed_out()
                    {
                    }
                    drop(state);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Sends until the connection fails; unacknowledged samples go back to the front.
    fn serve(self: &Arc<Self>, stream: Connection) -> std::io::Result<()> {
        let (generation, target) = {
            let state = self.state.lock();
            (state.broken, state.target)
        };
        let reader = stream.try_clone()?;
        let acks = Arc::clone(self);
        let reader = std::thread::spawn(move || acks.read_acks(reader, generation));
        let result = self.write_loop(stream, generation, target);
        let _ = reader.join();
        let mut state = self.state.lock();
        // Not acknowledged: send again on the next connection, in order.
        while let Some(line) = state.in_flight.pop_back() {
            state.waiting.push_front(line);
        }
        result
    }

    fn write_loop(
        &self,
        mut stream: Connection,
        generation: u64,
        target: u64,
    ) -> std::io::Result<()> {
        let result = self.write_batches(&mut stream, generation, target);
        let _ = stream.shutdown();
        result
    }

    /// Writes batches until the connection breaks (an error), or the pusher stops or is
    /// pointed elsewhere (Ok).
    fn write_batches(
        &self,
        stream: &mut Connection,
        generation: u64,
        target: u64,
    ) -> std::io::Result<()> {
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.state.lock();
                loop {
                    if state.broken != generation {
                        return Err(std::io::Error::other("the server closed the connection"));
                    }
                    if self.stopping.load(Ordering::Relaxed) || state.target != target {
                        return Ok(());
                    }
                    if !state.waiting.is_empty() && state.in_flight.len() < IN_FLIGHT {
                        break;
                    }
                    self.changed
                        .wait_for(&mut state, Duration::from_millis(500));
                }
                batch.clear();
                while state.in_flight.len() < IN_FLIGHT {
                    let Some(line) = state.waiting.pop_front() else {
                        break;
                    };
                    batch.extend_from_slice(line.as_bytes());
                    state.in_flight.push_back(line);
                }
            }
            stream.write_all(&batch)?;
        }
    }

    fn read_acks(&self, stream: Connection, generation: u64) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let mut state = self.state.lock();
            let sample = state.in_flight.pop_front();
            drop(state);
            self.sent.fetch_add(1, Ordering::Relaxed);
            if line.starts_with("ERR") {
                tracing::warn!(
                    "remote server {} refused {:?}: {}",
                    self.endpoint(),
                    sample.unwrap_or_default().trim_end(),
                    line.trim_end()
                );
            }
            self.changed.notify_all();
        }
        self.state.lock().broken = generation + 1;
        self.changed.notify_all();
    }
}
