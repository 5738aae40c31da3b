//! Pushing samples into a remote stat server (spud-host's remote sink, `spud replicate`):
//! pipelined `set TIME KEY VALUE`, reconnecting with backoff. Samples wait in a bounded buffer while the server is away and go out with
//! their original times when it is back. `set` rather than `qset`: each `OK` acknowledges one
//! sample, so a sample written into a connection that then died is sent again, not lost.
//! When the buffer is full the oldest samples are dropped, counted and logged.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::client::endpoint::{Connection, Endpoint};

/// Samples sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 10_000;

/// A buffered, acknowledged pusher to one server.
pub struct Pusher {
    addr: Endpoint,
    capacity: usize,
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
}

impl Pusher {
    /// Starts the sender thread.
    pub fn start(addr: Endpoint, capacity: usize) -> Arc<Pusher> {
        let sink = Arc::new(Pusher {
            addr,
            capacity: capacity.max(1),
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
        let mut state = self.state.lock();
        if state.waiting.len() + state.in_flight.len() >= self.capacity {
            state.waiting.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "remote server {} is away and the buffer of {} samples is full: {dropped} oldest samples dropped so far",
                    self.addr,
                    self.capacity
                );
            }
        }
        state.waiting.push_back(line);
        drop(state);
        self.changed.notify_all();
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
                    self.addr
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
            match self.addr.connect() {
                Ok(stream) => {
                    if said_down {
                        tracing::info!(
                            "remote server {} is back; sending {} buffered samples",
                            self.addr,
                            self.buffered()
                        );
                    }
                    said_down = false;
                    backoff = Duration::from_millis(100);
                    self.connected.store(true, Ordering::Relaxed);
                    if let Err(e) = self.serve(stream) {
                        tracing::warn!(
                            "remote server {}: {e}; buffering until it is back",
                            self.addr
                        );
                        said_down = true;
                    }
                    self.connected.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    if !said_down {
                        tracing::warn!(
                            "remote server {} unreachable: {e}; buffering up to {} samples",
                            self.addr,
                            self.capacity
                        );
                        said_down = true;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Sends until the connection fails; unacknowledged samples go back to the front.
    fn serve(self: &Arc<Self>, stream: Connection) -> std::io::Result<()> {
        let generation = self.state.lock().broken;
        let reader = stream.try_clone()?;
        let acks = Arc::clone(self);
        let reader = std::thread::spawn(move || acks.read_acks(reader, generation));
        let result = self.write_loop(stream, generation);
        let _ = reader.join();
        let mut state = self.state.lock();
        // Not acknowledged: send again on the next connection, in order.
        while let Some(line) = state.in_flight.pop_back() {
            state.waiting.push_front(line);
        }
        result
    }

    fn write_loop(&self, mut stream: Connection, generation: u64) -> std::io::Result<()> {
        let result = self.write_batches(&mut stream, generation);
        let _ = stream.shutdown();
        result
    }

    fn write_batches(&self, stream: &mut Connection, generation: u64) -> std::io::Result<()> {
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.state.lock();
                loop {
                    if state.broken != generation {
                        return Err(std::io::Error::other("the server closed the connection"));
                    }
                    if self.stopping.load(Ordering::Relaxed) {
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
                    self.addr,
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
