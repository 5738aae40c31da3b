//! The host's side of an isolated job: starts its worker, forwards collects, stores what
//! comes back, and when the worker dies, hangs or outgrows its limits, says why, kills what
//! is left and lets the job's backoff decide when the next worker starts.

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::jobs::job_host::JobHost;
use crate::loading::library::PrivateCopy;
use crate::loading::plugin_host::Outlet;
use crate::loading::worker::{describe_exit, receive, send, spawn, FromWorker, ToWorker, GRACE};
use crate::model::{Failure, FailureKind, JobSpec, Limits};

/// How long a new worker may take to load its plugin and accept its job.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a worker's stderr kept for the report of its death.
const LAST_WORDS: usize = 3;
/// How often a worker's thread count is looked at (it costs a read of /proc).
const THREAD_CHECK_EVERY: Duration = Duration::from_millis(250);

/// A job running in a worker process.
pub struct Isolated {
    spec: JobSpec,
    options: String,
    /// The private copy the workers load, kept while the job lives.
    library: Arc<PrivateCopy>,
    host: Arc<JobHost>,
    limits: Limits,
    worker: Mutex<Option<Arc<Worker>>>,
    /// A service (run until stopped) rather than a pull job.
    pub service: bool,
}

/// One worker process.
struct Worker {
    pid: u32,
    child: Mutex<Child>,
    writer: Mutex<UnixStream>,
    replies: Mutex<Receiver<Reply>>,
    /// The last lines it wrote to stderr (an abort's message, say).
    last_words: Arc<Mutex<VecDeque<String>>>,
    threads_checked: Mutex<Instant>,
}

enum Reply {
    Ready { service: bool },
    Refused(Failure),
    Done(Option<Failure>),
}

impl Isolated {
    /// Starts the job's first worker: the plugin checks the job's options there, and a
    /// refusal is the job's error, as in-process.
    pub fn start(
        spec: &JobSpec,
        options: String,
        library: Arc<PrivateCopy>,
        host: Arc<JobHost>,
        limits: Limits,
    ) -> Result<Isolated, Failure> {
        let mut isolated = Isolated {
            spec: spec.clone(),
            options,
            library,
            host,
            limits,
            worker: Mutex::new(None),
            service: false,
        };
        let (worker, service) = isolated.start_worker()?;
        isolated.service = service;
        *isolated.worker.lock() = Some(worker);
        Ok(isolated)
    }

    fn start_worker(&self) -> Result<(Arc<Worker>, bool), Failure> {
        let fail = |text: String| Failure::new(FailureKind::Died, text);
        let spawned =
            spawn(Some(self.limits)).map_err(|e| fail(format!("cannot start a worker: {e}")))?;
        let mut child = spawned.child;
        let pid = child.id();
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = spawned
            .socket
            .try_clone()
            .map_err(|e| fail(format!("worker socket: {e}")))?;
        let host = Arc::clone(&self.host);
        std::thread::Builder::new()
            .name(format!("worker-{pid}"))
            .spawn(move || read_worker(reader, &host, &tx))
            .map_err(|e| fail(format!("cannot start a reader thread: {e}")))?;
        let last_words = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let (host, last) = (Arc::clone(&self.host), Arc::clone(&last_words));
            let _ = std::thread::Builder::new()
                .name(format!("worker-{pid}-stderr"))
                .spawn(move || forward_stderr(stderr, &host, &last));
        }
        let worker = Arc::new(Worker {
            pid,
            child: Mutex::new(child),
            writer: Mutex::new(spawned.socket),
            replies: Mutex::new(rx),
            last_words,
            threads_checked: Mutex::new(Instant::now()),
        });
        let start = ToWorker::Start {
            library: self.library.path().to_path_buf(),
            job: self.spec.name.clone(),
            options: self.options.clone(),
            interval_ms: self.spec.interval.as_millis() as u64,
            timeout_ms: self.spec.timeout.as_millis() as u64,
            vars: self.host.ctx.vars.read().clone(),
        };
        worker.send(&start);
        let answer = worker.replies.lock().recv_timeout(START_TIMEOUT);
        match answer {
            Ok(Reply::Ready { service }) => {
                tracing::debug!(job = %self.spec.name, "worker {pid} ready");
                Ok((worker, service))
            }
            Ok(Reply::Refused(failure)) => {
                worker.kill();
                Err(failure)
            }
            Ok(Reply::Done(_)) | Err(RecvTimeoutError::Timeout) => {
                worker.kill();
                Err(Failure::new(
                    FailureKind::Timeout,
                    format!("worker {pid} did not take the job within {START_TIMEOUT:?}: killed"),
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err(fail(worker.death())),
        }
    }

    /// The running worker, or a new one (after a crash: the job's backoff has passed).
    fn current(&self) -> Result<Arc<Worker>, Failure> {
        if let Some(w) = self.worker.lock().as_ref() {
            return Ok(Arc::clone(w));
        }
        let (worker, _) = self.start_worker()?;
        tracing::info!(job = %self.spec.name, plugin = %self.spec.plugin, "started a new worker (pid {})", worker.pid);
        *self.worker.lock() = Some(Arc::clone(&worker));
        Ok(worker)
    }

    /// Forgets a worker that is dead or being killed.
    fn discard(&self, worker: &Arc<Worker>) {
        let mut slot = self.worker.lock();
        if slot.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker)) {
            *slot = None;
        }
    }

    /// One collect in the worker, within the job's timeout plus the grace period.
    pub fn collect(&self) -> Result<(), Failure> {
        let worker = self.current()?;
        worker.send(&ToWorker::Collect);
        let answer = worker
            .replies
            .lock()
            .recv_timeout(self.spec.timeout + GRACE);
        let result = match answer {
            Ok(Reply::Done(None)) => Ok(()),
            Ok(Reply::Done(Some(failure))) => Err(failure),
            Ok(_) => Err(out_of_turn()),
            Err(RecvTimeoutError::Timeout) => {
                worker.kill();
                self.discard(&worker);
                return Err(Failure::new(
                    FailureKind::Timeout,
                    format!(
                        "collect still running {:?} past its {:?} timeout: worker {} killed",
                        GRACE, self.spec.timeout, worker.pid
                    ),
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.discard(&worker);
                return Err(Failure::new(FailureKind::Died, worker.death()));
            }
        };
        if let Some(threads) = worker.threads_over(self.limits.threads) {
            worker.kill();
            self.discard(&worker);
            return Err(Failure::new(
                FailureKind::Died,
                format!(
                    "worker {} had {threads} threads, over the limit of {}: killed",
                    worker.pid, self.limits.threads
                ),
            ));
        }
        result
    }

    /// A service's run, until it returns or its worker dies.
    pub fn run(&self) -> Result<(), Failure> {
        let worker = self.current()?;
        worker.send(&ToWorker::Run);
        let answer = worker.replies.lock().recv();
        match answer {
            Ok(Reply::Done(None)) => Ok(()),
            Ok(Reply::Done(Some(failure))) => Err(failure),
            Ok(_) => Err(out_of_turn()),
            Err(_) => {
                self.discard(&worker);
                Err(Failure::new(FailureKind::Died, worker.death()))
            }
        }
    }

    /// New `[vars]` for the running worker.
    pub fn vars_changed(&self) {
        if let Some(w) = self.worker.lock().as_ref() {
            w.send(&ToWorker::Vars {
                vars: self.host.ctx.vars.read().clone(),
            });
        }
    }

    /// Retires the worker: asked to stop, killed if still there after the grace period.
    pub fn stop(&self) {
        let Some(worker) = self.worker.lock().take() else {
            return;
        };
        worker.send(&ToWorker::Stop);
        let _ = std::thread::Builder::new()
            .name(format!("retire-{}", worker.pid))
            .spawn(move || {
                let deadline = Instant::now() + GRACE;
                while Instant::now() < deadline {
                    if matches!(worker.child.lock().try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                worker.kill();
            });
    }

    /// The running worker's pid.
    pub fn pid(&self) -> Option<u32> {
        self.worker.lock().as_ref().map(|w| w.pid)
    }
}

fn out_of_turn() -> Failure {
    Failure::new(FailureKind::Died, "the worker answered out of turn")
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    fn send(&self, message: &ToWorker) {
        // A dead worker is noticed by its reader; nothing to do here.
        let _ = send(&mut *self.writer.lock(), message);
    }

    fn kill(&self) {
        let mut child = self.child.lock();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Why it died, once its reader has seen the end of its socket.
    fn death(&self) -> String {
        let status = {
            let mut child = self.child.lock();
            // The socket closes as the process exits: give the exit a moment to land.
            let deadline = Instant::now() + GRACE;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break describe_exit(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break "closed its socket: killed".to_string();
                    }
                    Err(e) => break e.to_string(),
                }
            }
        };
        // Its stderr may still be draining.
        std::thread::sleep(Duration::from_millis(20));
        let last = self.last_words.lock();
        if last.is_empty() {
            format!("worker {} died: {status}", self.pid)
        } else {
            let words: Vec<&str> = last.iter().map(String::as_str).collect();
            format!(
                "worker {} died: {status}; its last words: {}",
                self.pid,
                words.join(" | ")
            )
        }
    }

    /// Its thread count if over `limit` (looked at once a second at most).
    fn threads_over(&self, limit: u64) -> Option<u64> {
        {
            let mut checked = self.threads_checked.lock();
            if checked.elapsed() < THREAD_CHECK_EVERY {
                return None;
            }
            *checked = Instant::now();
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let threads: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()?;
        (threads > limit).then_some(threads)
    }
}

/// Stores the worker's samples, logs its plugin's lines, and hands everything else to
/// whoever waits for an answer. Ends with the socket.
fn read_worker(socket: UnixStream, host: &JobHost, replies: &crossbeam_channel::Sender<Reply>) {
    let mut input = BufReader::new(socket);
    loop {
        let message = match receive::<FromWorker>(&mut input) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                host.log(1, &format!("unreadable message from the worker: {e}"));
                return;
            }
        };
        let reply = match message {
            FromWorker::Set { key, value, time } => {
                host.set(&key, &value, time);
                continue;
            }
            FromWorker::Log { level, message } => {
                host.log(level, &message);
                continue;
            }
            FromWorker::Ready { service } => Reply::Ready { service },
            FromWorker::Refused { failure } => Reply::Refused(failure),
            FromWorker::Done { failure } => Reply::Done(failure),
            FromWorker::Declared(_) => continue,
        };
        if replies.send(reply).is_err() {
            return;
        }
    }
}

/// A line of a Rust backtrace (`  12: frame`, `at src/x.rs:1`, its header and notes).
fn is_backtrace(line: &str) -> bool {
    let t = line.trim_start();
    let frame = t
        .split_once(':')
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    frame
        || t.starts_with("at ")
        || t == "stack backtrace:"
        || t.starts_with("note: Some details are omitted")
        || t.starts_with("note: run with `RUST_BACKTRACE")
}

/// The worker's stderr, into the host's log under the job's name.
fn forward_stderr(
    stderr: std::process::ChildStderr,
    host: &JobHost,
    last: &Mutex<VecDeque<String>>,
) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        host.log(2, &format!("worker: {line}"));
        if is_backtrace(&line) {
            continue; // in the log, but not what the death report should quote
        }
        let mut last = last.lock();
        if last.len() == LAST_WORDS {
            last.pop_front();
        }
        last.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::is_backtrace;

    #[test]
    fn backtrace_lines_are_told_from_last_words() {
        for line in [
            "stack backtrace:",
            "  12: std::rt::lang_start",
            "             at /rustc/abc/library/std/src/rt.rs:206:5",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        ] {
            assert!(is_backtrace(line), "{line}");
        }
        for line in [
            "memory allocation of 67108864 bytes failed",
            "thread '<unnamed>' panicked at src/lib.rs:3:5:",
            "fatal runtime error: stack overflow",
        ] {
            assert!(!is_backtrace(line), "{line}");
        }
    }
}
