//! Running jobs on time. A pull job collects as soon as it (re)starts, then ticks on its
//! interval, aligned to the clock (each job at a fixed offset within its interval, derived
//! from its name, so that thousands of jobs do not all fire in the same millisecond), on a
//! bounded pool of threads: collectors may block on sockets. The pool holds one thread
//! while collects are quick; a collect that waits a millisecond adds one, up to `[host]
//! workers`, and a thread idle for `IDLE_EXIT` ends. A tick that finds the previous collect still running is skipped and counted,
//! never stacked. A collect that overruns its timeout is recorded as a timeout and the job
//! is marked wedged until that call returns. Services get a thread each.
//!
//! A job that crashes (its plugin panics; a service that dies) backs off: each crash in a row
//! doubles the wait before the next run, up to five minutes, and after `PARK_AFTER` crashes
//! in a row it is parked as failed until its plugin or its options change (which makes a new
//! job). A collect that merely returns an error (a target that is down) is not a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use spud_plugin_api::ffi::JobStyle;

use crate::jobs::job::Job;

/// Crashes in a row after which a job is parked.
pub const PARK_AFTER: u64 = 5;
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// A collect thread beyond the first ends after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(30);

enum Kind {
    /// The first tick of a job just (re)started: due at once.
    Start,
    Tick,
    /// The deadline of call number N.
    Deadline(u64),
}

struct Entry {
    /// When it is really due (its bucket is this, rounded up to the millisecond).
    due: Instant,
    kind: Kind,
    job: Arc<Job>,
}

struct Task {
    job: Arc<Job>,
    due: Instant,
}

/// What is due, by the millisecond (since `epoch`) it falls due in: a calendar queue. Ticks
/// are millisecond-grained anyway, and thousands of jobs share few buckets.
struct State {
    epoch: Instant,
    due: BTreeMap<u64, Vec<Entry>>,
    jobs: HashMap<String, Arc<Job>>,
    stopping: bool,
}

impl State {
    /// The millisecond bucket for `at`, rounded up: nothing runs early.
    fn bucket(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_micros()
            .div_ceil(1000) as u64
    }

    fn instant(&self, bucket: u64) -> Instant {
        self.epoch + Duration::from_millis(bucket)
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Collects waiting for a worker.
    queue: Mutex<Queue>,
    queued: Condvar,
    /// How late collects started (microseconds), since the last report.
    lateness: Mutex<Vec<u32>>,
    /// Collects started since the scheduler started.
    collects: std::sync::atomic::AtomicU64,
    /// The most collect threads at once (`[host] workers`).
    max_workers: usize,
}

#[derive(Default)]
struct Queue {
    /// With when each was queued.
    tasks: std::collections::VecDeque<(Instant, Task)>,
    closed: bool,
    /// Collect threads running, and how many of them wait for work.
    workers: usize,
    idle: usize,
    /// Collect threads started so far, for their names.
    started: usize,
}

/// A collect that waited a millisecond means the awake workers are busy (a collector
/// blocking on a socket, say): wake an idle one, or start one more. Returns whether
/// anything is waiting.
fn help_backlog(shared: &Arc<Shared>, now: Instant) -> bool {
    let mut queue = shared.queue.lock();
    let Some((queued_at, _)) = queue.tasks.front() else {
        return false;
    };
    if now.saturating_duration_since(*queued_at) >= Duration::from_millis(1) {
        if queue.idle > 0 {
            shared.queued.notify_one();
        } else if queue.workers < shared.max_workers {
            add_worker(shared, &mut queue);
        }
    }
    true
}

/// Starts one more collect thread.
fn add_worker(shared: &Arc<Shared>, queue: &mut Queue) {
    let n = queue.started;
    let spawned = std::thread::Builder::new()
        .name(format!("collect-{n}"))
        .spawn({
            let shared = Arc::clone(shared);
            move || worker_loop(&shared)
        });
    match spawned {
        Ok(_) => {
            queue.workers += 1;
            queue.started += 1;
        }
        Err(e) => tracing::warn!("cannot start a collect thread: {e}"),
    }
}

/// The scheduler: a timer thread and a pool of collect threads.
pub struct Scheduler {
    shared: Arc<Shared>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    pub fn start(workers: usize) -> Scheduler {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                epoch: Instant::now(),
                due: BTreeMap::new(),
                jobs: HashMap::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            lateness: Mutex::new(Vec::new()),
            collects: Default::default(),
            max_workers: workers.max(1),
        });
        add_worker(&shared, &mut shared.queue.lock());
        let timer_shared = Arc::clone(&shared);
        let timer = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || timer_loop(&timer_shared))
            .expect("spawn the scheduler");
        Scheduler {
            shared,
            timer: Mutex::new(Some(timer)),
        }
    }

    /// Starts `job`, replacing (and stopping) any job of the same name.
    pub fn add(&self, job: Arc<Job>) {
        let mut state = self.shared.state.lock();
        if let Some(old) = state.jobs.insert(job.name().to_string(), Arc::clone(&job)) {
            stop_job(&old);
        }
        job.report("state", "running");
        match job.style {
            JobStyle::Pull => {
                // A job that (re)starts (a new plugin generation, new options, a new job)
                // collects at once: a fix shows without waiting out an interval.
                push(&mut state, Instant::now(), Kind::Start, job);
                drop(state);
                self.shared.wake.notify_one();
            }
            JobStyle::Service => {
                drop(state);
                std::thread::Builder::new()
                    .name(format!("service-{}", job.name()))
                    .spawn(move || run_service(&job))
                    .expect("spawn a service thread");
            }
        }
    }

    /// Runs one collect of `name` now, outside its schedule.
    pub fn run_now(&self, name: &str) -> Result<(), String> {
        let job = self
            .get(name)
            .ok_or_else(|| format!("no running job is called {name}"))?;
        if job.style != JobStyle::Pull {
            return Err(format!("{name} is a service: it runs all the time"));
        }
        if job.busy.swap(true, Ordering::Relaxed) {
            return Err(format!("{name} is collecting already"));
        }
        job.call.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.shared
            .queue
            .lock()
            .tasks
            .push_back((now, Task { job, due: now }));
        self.shared.queued.notify_one();
        Ok(())
    }

    /// The running job called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Job>> {
        self.shared.state.lock().jobs.get(name).cloned()
    }

    /// Stops the job called `name`, if there is one.
    pub fn remove(&self, name: &str) -> Option<Arc<Job>> {
        let job = self.shared.state.lock().jobs.remove(name)?;
        stop_job(&job);
        Some(job)
    }

    /// The jobs, by name.
    pub fn jobs(&self) -> Vec<Arc<Job>> {
        let mut jobs: Vec<_> = self.shared.state.lock().jobs.values().cloned().collect();
        jobs.sort_by(|a, b| a.name().cmp(b.name()));
        jobs
    }

    /// Collects started since the scheduler started.
    pub fn collects(&self) -> u64 {
        self.shared.collects.load(Ordering::Relaxed)
    }

    /// Lateness of collects since the last call, in microseconds, sorted.
    pub fn take_lateness(&self) -> Vec<u32> {
        let mut v = std::mem::take(&mut *self.shared.lateness.lock());
        v.sort_unstable();
        v
    }

    /// Stops ticking, stops every job, and gives running collects `grace` to return.
    pub fn stop(&self, grace: Duration) {
        let jobs: Vec<Arc<Job>> = {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            state.due.clear();
            state.jobs.drain().map(|(_, j)| j).collect()
        };
        self.shared.wake.notify_all();
        if let Some(timer) = self.timer.lock().take() {
            let _ = timer.join();
        }
        self.shared.queue.lock().closed = true;
        self.shared.queued.notify_all();
        for job in &jobs {
            stop_job(job);
        }
        let deadline = Instant::now() + grace;
        while jobs.iter().any(|j| j.busy.load(Ordering::Relaxed)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn stop_job(job: &Arc<Job>) {
    job.stopped.store(true, Ordering::Relaxed);
    job.runner.stop(&job.host);
    if job.style == JobStyle::Service {
        wake_receivers(job);
    }
}

/// A service blocked on a socket the host keeps for it sees its stop only when the socket
/// wakes it: it is sent nothing (an empty datagram, a connection closed at once) until its
/// run returns, for two seconds at most. Its next generation may share the socket and take
/// a wake-up instead, which it ignores; so the wake-ups go on until this one is out. Thanks
/// to them, an idle receiver's reads wait a second, not 100 ms (`kit::listen`).
fn wake_receivers(job: &Arc<Job>) {
    let sockets = job.host.held_sockets();
    if sockets.is_empty() {
        return;
    }
    let job = Arc::clone(job);
    let _ = std::thread::Builder::new()
        .name("wake".into())
        .spawn(move || {
            // Until the job's reads would have looked at the stop flag anyway.
            let until = Instant::now() + spud_plugin_api::kit::listen::HELD_POLL;
            while job.serving.load(Ordering::Relaxed) && Instant::now() < until {
                for socket in &sockets {
                    crate::jobs::sockets::wake(socket);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
}

/// Sleeps in whole milliseconds and hands every collect that fell due to the workers as
/// one batch: thousands of jobs cost a thousand wake-ups a second, not one per job.
fn timer_loop(shared: &Arc<Shared>) {
    let mut state = shared.state.lock();
    let mut batch = Vec::new();
    loop {
        if state.stopping {
            return;
        }
        let now = Instant::now();
        let Some(first) = state.due.keys().next().copied() else {
            shared.wake.wait(&mut state);
            continue;
        };
        let first_at = state.instant(first);
        if first_at > now {
            let mut until = first_at;
            if help_backlog(shared, now) {
                // Collects are waiting: look again in a millisecond.
                until = until.min(now + Duration::from_millis(1));
            }
            shared.wake.wait_until(&mut state, until);
            continue;
        }
        let (_, entries) = state.due.pop_first().expect("a first bucket");
        for entry in entries {
            if let Some(task) = fire(&mut state, entry, now) {
                batch.push(task);
            }
        }
        if !batch.is_empty() {
            let mut queue = shared.queue.lock();
            queue.tasks.extend(batch.drain(..).map(|task| (now, task)));
            drop(queue);
            // One worker drains quick collects alone; more join only if a backlog persists.
            shared.queued.notify_one();
        }
        help_backlog(shared, now);
    }
}

/// Handles one due entry; returns the collect to run, if any.
fn fire(state: &mut State, entry: Entry, now: Instant) -> Option<Task> {
    let (job, due) = (entry.job, entry.due);
    if job.stopped.load(Ordering::Relaxed) || job.parked.load(Ordering::Relaxed) {
        return None;
    }
    match entry.kind {
        kind @ (Kind::Start | Kind::Tick) => {
            let mut task = None;
            let backing_off = job.backoff_until.lock().is_some_and(|until| now < until);
            if backing_off || job.paused.load(Ordering::Relaxed) {
                // Waiting out a crash: the tick passes without a collect.
            } else if job.busy.load(Ordering::Relaxed) {
                let n = job.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::debug!(job = %job.name(), "tick skipped: the previous collect is still running ({n} so far)");
                }
            } else {
                job.busy.store(true, Ordering::Relaxed);
                let call = job.call.fetch_add(1, Ordering::Relaxed) + 1;
                push(
                    state,
                    now + job.spec.timeout,
                    Kind::Deadline(call),
                    Arc::clone(&job),
                );
                task = Some(Task {
                    job: Arc::clone(&job),
                    due,
                });
            }
            // After a start, the job joins its phase, passing over a phase point that falls
            // within half an interval (it would find the first collect still running, or
            // collect twice in a row).
            let after = match kind {
                Kind::Start => now + job.spec.interval / 2,
                _ => due.max(now),
            };
            let next = next_due(&job, after);
            push(state, next, Kind::Tick, job);
            task
        }
        Kind::Deadline(call) => {
            let still_running =
                job.busy.load(Ordering::Relaxed) && job.call.load(Ordering::Relaxed) == call;
            if still_running && !job.wedged.swap(true, Ordering::Relaxed) {
                let n = job.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    job = %job.name(),
                    plugin = %job.plugin.name,
                    "collect has run past its {:?} timeout: job wedged, not scheduled again until it returns",
                    job.spec.timeout
                );
                job.report("timeouts", n);
                job.report("state", "wedged");
            }
            None
        }
    }
}

fn push(state: &mut State, due: Instant, kind: Kind, job: Arc<Job>) {
    let bucket = state.bucket(due);
    state
        .due
        .entry(bucket)
        .or_default()
        .push(Entry { due, kind, job });
}

fn worker_loop(shared: &Shared) {
    loop {
        let task = {
            let mut queue = shared.queue.lock();
            loop {
                if let Some((_, task)) = queue.tasks.pop_front() {
                    break task;
                }
                if queue.closed {
                    queue.workers -= 1;
                    return;
                }
                queue.idle += 1;
                let waited = shared.queued.wait_for(&mut queue, IDLE_EXIT);
                queue.idle -= 1;
                if waited.timed_out() && queue.tasks.is_empty() && queue.workers > 1 {
                    queue.workers -= 1;
                    return;
                }
            }
        };
        collect(shared, task);
    }
}

fn collect(shared: &Shared, task: Task) {
    let job = task.job;
    let start = Instant::now();
    let late = start.saturating_duration_since(task.due);
    shared.collects.fetch_add(1, Ordering::Relaxed);
    shared
        .lateness
        .lock()
        .push(late.as_micros().min(u32::MAX as u128) as u32);
    let result = job.runner.collect();
    let took = start.elapsed();
    job.busy.store(false, Ordering::Relaxed);
    if job.wedged.swap(false, Ordering::Relaxed) {
        tracing::info!(job = %job.name(), "collect returned after {took:?}; scheduled again");
        job.report("state", "running");
    }
    // The reporter publishes these every few seconds.
    job.last_collect_us.store(
        took.as_micros().min(u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
    match result {
        Ok(()) => {
            if job.crashes.swap(0, Ordering::Relaxed) > 0 {
                *job.backoff_until.lock() = None;
                job.report("state", "running");
            }
        }
        Err(failure) => {
            job.failed(&failure.message);
            if failure.is_crash() {
                crashed(&job);
            }
        }
    }
}

/// One more crash in a row: back off, or park the job. Returns whether it was parked.
fn crashed(job: &Job) -> bool {
    let n = job.crashes.fetch_add(1, Ordering::Relaxed) + 1;
    job.report(
        "crashes",
        job.crashes_total.fetch_add(1, Ordering::Relaxed) + 1,
    );
    if n >= PARK_AFTER {
        job.parked.store(true, Ordering::Relaxed);
        tracing::error!(
            job = %job.name(),
            plugin = %job.plugin.name,
            "crashed {n} times in a row: parked as failed until its plugin or its options change"
        );
        job.report("state", "failed");
        return true;
    }
    let wait = job
        .spec
        .interval
        .saturating_mul(1 << n.min(20))
        .min(BACKOFF_CAP);
    *job.backoff_until.lock() = Some(Instant::now() + wait);
    tracing::warn!(job = %job.name(), "crashed {n} times in a row: next run in {wait:?}");
    job.report("state", "backoff");
    false
}

fn run_service(job: &Job) {
    while !job.stopped.load(Ordering::Relaxed) {
        let started = Instant::now();
        job.serving.store(true, Ordering::Relaxed);
        let result = job.runner.run();
        job.serving.store(false, Ordering::Relaxed);
        if job.stopped.load(Ordering::Relaxed) {
            break;
        }
        match result {
            Ok(()) => job.failed("service returned before it was asked to stop"),
            Err(failure) => job.failed(&failure.message),
        }
        // A service that ran a good while before it ended starts a new count.
        if started.elapsed() > Duration::from_secs(60) {
            job.crashes.store(0, Ordering::Relaxed);
        }
        if crashed(job) {
            return;
        }
        let until = job.backoff_until.lock().unwrap_or_else(Instant::now);
        while Instant::now() < until && !job.stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The next tick strictly after `after`: the next wall-clock multiple of the interval, plus
/// the job's fixed offset within it.
fn next_due(job: &Job, after: Instant) -> Instant {
    let interval = job.spec.interval.as_nanos().max(1);
    let phase = job.phase.as_nanos() % interval;
    let now = Instant::now();
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let wall_after = if after >= now {
        wall_now + (after - now).as_nanos()
    } else {
        wall_now.saturating_sub((now - after).as_nanos())
    };
    let k = (wall_after.saturating_sub(phase)) / interval + 1;
    let wall_next = k * interval + phase;
    let from_now = wall_next.saturating_sub(wall_now);
    now + Duration::from_nanos(from_now.min(u64::MAX as u128) as u64)
}
