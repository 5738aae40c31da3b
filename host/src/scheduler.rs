//! Running jobs on time. Pull jobs tick on their interval, aligned to the clock (each job at
//! a fixed offset within its interval, derived from its name, so that thousands of jobs do
//! not all fire in the same millisecond), on a bounded pool of threads: collectors may block
//! on sockets. A tick that finds the previous collect still running is skipped and counted,
//! never stacked. A collect that overruns its timeout is recorded as a timeout and the job
//! is marked wedged until that call returns. Services get a thread each.

use std::cmp::Ordering as CmpOrdering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::RResult;
use parking_lot::{Condvar, Mutex};
use spud_plugin_api::ffi::JobStyle;

use crate::job::Job;

enum Kind {
    Tick,
    /// The deadline of call number N.
    Deadline(u64),
}

struct Entry {
    due: Instant,
    seq: u64,
    kind: Kind,
    job: Arc<Job>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Task {
    job: Arc<Job>,
    due: Instant,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    jobs: HashMap<String, Arc<Job>>,
    seq: u64,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// How late collects started (microseconds), since the last report.
    lateness: Mutex<Vec<u32>>,
}

/// The scheduler: a timer thread and a pool of collect threads.
pub struct Scheduler {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
    work: Option<crossbeam_channel::Sender<Task>>,
}

impl Scheduler {
    pub fn start(workers: usize) -> Scheduler {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            lateness: Mutex::new(Vec::new()),
        });
        let (work, tasks) = crossbeam_channel::unbounded::<Task>();
        for n in 0..workers.max(1) {
            let tasks = tasks.clone();
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("collect-{n}"))
                .spawn(move || {
                    for task in tasks {
                        collect(&shared, task);
                    }
                })
                .expect("spawn a collect thread");
        }
        let timer_shared = Arc::clone(&shared);
        let work_for_timer = work.clone();
        let timer = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || timer_loop(&timer_shared, &work_for_timer))
            .expect("spawn the scheduler");
        Scheduler {
            shared,
            timer: Some(timer),
            work: Some(work),
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
                let due = next_due(&job, Instant::now());
                state.seq += 1;
                let seq = state.seq;
                state.heap.push(Entry {
                    due,
                    seq,
                    kind: Kind::Tick,
                    job,
                });
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

    /// Lateness of collects since the last call, in microseconds, sorted.
    pub fn take_lateness(&self) -> Vec<u32> {
        let mut v = std::mem::take(&mut *self.shared.lateness.lock());
        v.sort_unstable();
        v
    }

    /// Stops ticking, stops every job, and gives running collects `grace` to return.
    pub fn stop(&mut self, grace: Duration) {
        let jobs: Vec<Arc<Job>> = {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            state.heap.clear();
            state.jobs.drain().map(|(_, j)| j).collect()
        };
        self.shared.wake.notify_all();
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
        self.work.take();
        for job in &jobs {
            stop_job(job);
        }
        let deadline = Instant::now() + grace;
        while jobs.iter().any(|j| j.busy.load(Ordering::Relaxed)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn stop_job(job: &Job) {
    job.stopped.store(true, Ordering::Relaxed);
    job.host.request_stop();
}

fn timer_loop(shared: &Shared, work: &crossbeam_channel::Sender<Task>) {
    let mut state = shared.state.lock();
    loop {
        if state.stopping {
            return;
        }
        let now = Instant::now();
        match state.heap.peek() {
            None => {
                shared.wake.wait(&mut state);
                continue;
            }
            Some(top) if top.due > now => {
                let due = top.due;
                shared.wake.wait_until(&mut state, due);
                continue;
            }
            Some(_) => {}
        }
        let entry = state.heap.pop().expect("peeked");
        let job = entry.job;
        if job.stopped.load(Ordering::Relaxed) {
            continue;
        }
        match entry.kind {
            Kind::Tick => {
                if job.busy.load(Ordering::Relaxed) {
                    let n = job.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                    job.report("skipped", n);
                } else {
                    job.busy.store(true, Ordering::Relaxed);
                    let call = job.call.fetch_add(1, Ordering::Relaxed) + 1;
                    state.seq += 1;
                    let seq = state.seq;
                    state.heap.push(Entry {
                        due: now + job.spec.timeout,
                        seq,
                        kind: Kind::Deadline(call),
                        job: Arc::clone(&job),
                    });
                    let _ = work.send(Task {
                        job: Arc::clone(&job),
                        due: entry.due,
                    });
                }
                let due = next_due(&job, entry.due.max(now));
                state.seq += 1;
                let seq = state.seq;
                state.heap.push(Entry {
                    due,
                    seq,
                    kind: Kind::Tick,
                    job,
                });
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
            }
        }
    }
}

fn collect(shared: &Shared, task: Task) {
    let job = task.job;
    let start = Instant::now();
    *job.started.lock() = start;
    let late = start.saturating_duration_since(task.due);
    shared
        .lateness
        .lock()
        .push(late.as_micros().min(u32::MAX as u128) as u32);
    let result = job.collector.lock().collect();
    let took = start.elapsed();
    job.busy.store(false, Ordering::Relaxed);
    if job.wedged.swap(false, Ordering::Relaxed) {
        tracing::info!(job = %job.name(), "collect returned after {took:?}; scheduled again");
        job.report("state", "running");
    }
    match result {
        RResult::ROk(()) => {}
        RResult::RErr(e) => job.failed(e.as_str()),
    }
    job.report(
        "collect_ms",
        format_args!("{:.3}", took.as_secs_f64() * 1000.0),
    );
    job.report("samples", job.host.samples.load(Ordering::Relaxed));
}

fn run_service(job: &Job) {
    let mut backoff = Duration::from_secs(1);
    while !job.stopped.load(Ordering::Relaxed) {
        let result = job.collector.lock().run();
        if job.stopped.load(Ordering::Relaxed) {
            break;
        }
        match result {
            RResult::ROk(()) => {
                job.failed("service returned before it was asked to stop; restarting")
            }
            RResult::RErr(e) => job.failed(&format!("{}; restarting in {backoff:?}", e.as_str())),
        }
        let deadline = Instant::now() + backoff;
        while Instant::now() < deadline && !job.stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// The next tick strictly after `after`: the next wall-clock multiple of the interval, plus
/// the job's fixed offset within it.
fn next_due(job: &Job, after: Instant) -> Instant {
    let interval = job.spec.interval.as_nanos().max(1);
    let mut h = DefaultHasher::new();
    job.name().hash(&mut h);
    let phase = (h.finish() as u128) % interval;
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
