//! Pushing samples into a remote stat server (spud-host's remote sink, `spud replicate`):
//! pipelined `set TIME KEY VALUE`, reconnecting with backoff. Samples wait in a backlog
//! (memory, or a spool on disk that a restart keeps) while the server is away and go out
//! with their original times when it is back. `set` rather than `qset`: each `OK`
//! acknowledges one sample, so a sample written into a connection that then died is sent
//! again, not lost. It can be pointed at another server, or given another backlog, while it
//! runs (`retarget`): what is held for the old one, acknowledged or not, goes to the new one.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use spud_spool::Backlog;

use crate::client::endpoint::{Connection, Endpoint};

/// Samples sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 10_000;

/// How long the writer waits for acknowledgements when `IN_FLIGHT` are out (they notify
/// it; this bounds a notification that came between its look and its wait).
const FULL: Duration = Duration::from_millis(100);

/// How long the writer waits for samples before it looks at its connection again (a
/// broken connection, a stop or a new target wakes it sooner: an idle host's pusher
/// sleeps).
const IDLE: Duration = Duration::from_secs(5);

/// A buffered, acknowledged pusher to one server.
pub struct Pusher {
    endpoint: Mutex<Endpoint>,
    backlog: Mutex<Arc<Backlog>>,
    state: Mutex<State>,
    changed: Condvar,
    sent: AtomicU64,
    connected: AtomicBool,
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Bumped when a connection ends, so the writer knows to reconnect.
    broken: u64,
    /// Bumped when the endpoint or the backlog changes, so the writer leaves the old ones.
    target: u64,
}

impl Pusher {
    /// Starts the sender thread; samples wait in `backlog` until the server has them.
    pub fn start(addr: Endpoint, backlog: Arc<Backlog>) -> Arc<Pusher> {
        let sink = Arc::new(Pusher {
            endpoint: Mutex::new(addr),
            backlog: Mutex::new(backlog),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
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

    /// Queues one sample (the backlog drops, and counts, its oldest when full).
    pub fn push(&self, key: &str, value: &str, time: u64) {
        let mut body = Vec::with_capacity(key.len() + value.len() + 1);
        body.extend_from_slice(key.as_bytes());
        body.push(b' ');
        body.extend_from_slice(value.as_bytes());
        self.backlog().push(time, &body);
    }

    /// The server it sends to now.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.lock().clone()
    }

    /// Where samples wait now.
    pub fn backlog(&self) -> Arc<Backlog> {
        Arc::clone(&self.backlog.lock())
    }

    /// Sends to `endpoint` from now on, samples waiting in `backlog`. What waits, and what
    /// the old server has not acknowledged, goes to the new one (a sample the old one took
    /// but had not yet acknowledged reaches both) and into the new backlog.
    pub fn retarget(&self, endpoint: Endpoint, backlog: Arc<Backlog>) {
        let old = std::mem::replace(&mut *self.endpoint.lock(), endpoint);
        let old_backlog = std::mem::replace(&mut *self.backlog.lock(), Arc::clone(&backlog));
        self.state.lock().target += 1;
        self.changed.notify_all();
        old_backlog.wake();
        if !Arc::ptr_eq(&old_backlog, &backlog) {
            // Once the writer has let go of the old backlog, what it holds moves over, in
            // order.
            let _sender = old_backlog.consume();
            let mut moved = 0;
            loop {
                let records = old_backlog.take(10_000, Duration::ZERO);
                if records.is_empty() {
                    break;
                }
                for r in &records {
                    backlog.push(r.time, &r.body);
                }
                moved += records.len();
                old_backlog.ack(records.len());
            }
            old_backlog.sync();
            tracing::info!("remote server: {moved} held samples moved to the new backlog");
        }
        tracing::info!(
            "remote server: switching from {old} to {} with {} samples held",
            self.endpoint(),
            self.buffered()
        );
    }

    /// Samples waiting or unacknowledged.
    pub fn buffered(&self) -> u64 {
        self.backlog().held()
    }

    /// Samples the server acknowledged.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Samples dropped because the backlog was full.
    pub fn dropped(&self) -> u64 {
        self.backlog().dropped()
    }

    /// Whether it is connected now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Waits up to `within` for the backlog to empty, then stops the sender. A spool keeps
    /// what is left for the next start.
    pub fn flush_and_stop(&self, within: Duration) {
        let backlog = self.backlog();
        if !backlog.drained(within) {
            tracing::warn!(
                "{} samples for {} not delivered at shutdown{}",
                backlog.held(),
                self.endpoint(),
                if backlog.is_spool() {
                    "; the spool keeps them for the next start"
                } else {
                    ""
                }
            );
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.changed.notify_all();
        backlog.wake();
        backlog.sync();
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
                            "remote server {endpoint} is back; sending {} held samples",
                            self.buffered()
                        );
                    }
                    said_down = false;
                    backoff = Duration::from_millis(100);
                    self.connected.store(true, Ordering::Relaxed);
                    if let Err(e) = self.serve(stream) {
                        tracing::warn!(
                            "remote server {endpoint}: {e}; holding samples until it is back"
                        );
                        said_down = true;
                    }
                    self.connected.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    if !said_down {
                        tracing::warn!(
                            "remote server {endpoint} unreachable: {e}; holding samples until it is back"
                        );
                        said_down = true;
                    }
                    // A wait that a retarget cuts short (a new sample does not).
                    let until = Instant::now() + backoff;
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

    /// Sends until the connection fails; unacknowledged samples are taken again next time.
    fn serve(self: &Arc<Self>, stream: Connection) -> std::io::Result<()> {
        let (generation, target) = {
            let state = self.state.lock();
            (state.broken, state.target)
        };
        // One backlog for the connection's life: its acknowledgements go where its samples
        // came from.
        let backlog = self.backlog();
        let _sender = backlog.consume();
        let reader = stream.try_clone()?;
        let acks = Arc::clone(self);
        let acked = Arc::clone(&backlog);
        let reader = std::thread::spawn(move || acks.read_acks(reader, generation, &acked));
        let result = self.write_loop(stream, generation, target, &backlog);
        let _ = reader.join();
        // Not acknowledged: sent again on the next connection, in order (the sender's
        // hold, let go here, rewinds).
        result
    }

    fn write_loop(
        &self,
        mut stream: Connection,
        generation: u64,
        target: u64,
        backlog: &Backlog,
    ) -> std::io::Result<()> {
        let result = self.write_batches(&mut stream, generation, target, backlog);
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
        backlog: &Backlog,
    ) -> std::io::Result<()> {
        let mut batch = Vec::new();
        loop {
            {
                let state = self.state.lock();
                if state.broken != generation {
                    return Err(std::io::Error::other("the server closed the connection"));
                }
                if self.stopping.load(Ordering::Relaxed) || state.target != target {
                    return Ok(());
                }
            }
            let room = IN_FLIGHT.saturating_sub(backlog.taken());
            if room == 0 {
                let mut state = self.state.lock();
                self.changed.wait_for(&mut state, FULL);
                continue;
            }
            let records = backlog.take(room, IDLE);
            if records.is_empty() {
                continue;
            }
            batch.clear();
            let mut time = itoa::Buffer::new();
            for record in &records {
                batch.extend_from_slice(b"set ");
                batch.extend_from_slice(time.format(record.time).as_bytes());
                batch.push(b' ');
                batch.extend_from_slice(&record.body);
                batch.extend_from_slice(b"\r\n");
            }
            stream.write_all(&batch)?;
        }
    }

    fn read_acks(&self, stream: Connection, generation: u64, backlog: &Backlog) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        'connection: loop {
            // Every whole reply read so far is acknowledged in one go.
            let mut replies = 0;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        backlog.ack(replies);
                        self.sent.fetch_add(replies as u64, Ordering::Relaxed);
                        break 'connection;
                    }
                    Ok(_) => replies += 1,
                }
                if line.starts_with("ERR") {
                    tracing::warn!(
                        "remote server {} refused a sample: {}",
                        self.endpoint(),
                        line.trim_end()
                    );
                }
                if !reader.buffer().contains(&b'\n') {
                    break;
                }
            }
            backlog.ack(replies);
            self.sent.fetch_add(replies as u64, Ordering::Relaxed);
            self.changed.notify_all();
        }
        self.state.lock().broken = generation + 1;
        self.changed.notify_all();
        backlog.wake();
    }
}
