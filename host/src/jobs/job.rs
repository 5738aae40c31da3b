//! One job: its collector (in the host or in a worker), the host its plugin sees, its
//! place in the schedule and its counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use spud_plugin_api::ffi::{CollectorBox, JobStyle};

use crate::jobs::isolation::Isolated;
use crate::jobs::job_host::{Context, JobHost};
use crate::jobs::sockets;
use crate::loading::library::Module;
use crate::loading::loader::Plugin;
use crate::loading::plugin_host;
use crate::model::{Failure, Isolation, JobSpec};

/// Where a job's collector runs.
pub enum Runner {
    /// In the host's process: the module that made the collector, and the collector.
    InProcess(Module, Mutex<CollectorBox>),
    /// In a worker process of its own (`isolation = "process"`).
    Process(Isolated),
}

impl Runner {
    pub fn collect(&self) -> Result<(), Failure> {
        match self {
            Runner::InProcess(module, c) => module.collect(&mut c.lock()),
            Runner::Process(p) => p.collect(),
        }
    }

    pub fn run(&self) -> Result<(), Failure> {
        match self {
            Runner::InProcess(module, c) => module.run(&mut c.lock()),
            Runner::Process(p) => p.run(),
        }
    }

    /// Asks it to stop: a service's `stop_requested` turns true; a worker is retired.
    pub fn stop(&self, host: &JobHost) {
        host.request_stop();
        if let Runner::Process(p) = self {
            p.stop();
        }
    }

    /// The worker's pid, for an isolated job that has one running.
    pub fn worker_pid(&self) -> Option<u32> {
        match self {
            Runner::InProcess(..) => None,
            Runner::Process(p) => p.pid(),
        }
    }
}

/// A running job.
pub struct Job {
    pub spec: JobSpec,
    pub plugin: Arc<Plugin>,
    pub host: Arc<JobHost>,
    pub style: JobStyle,
    pub runner: Runner,
    /// A collect is under way.
    pub busy: AtomicBool,
    /// Which call is (or was last) under way, so a deadline can tell whether it still is.
    pub call: AtomicU64,
    /// Its collect overran the timeout and has not returned yet.
    pub wedged: AtomicBool,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub skipped: AtomicU64,
    /// How long the last collect took, in microseconds.
    pub last_collect_us: AtomicU64,
    /// Its ticks' offset within the interval.
    pub phase: Duration,
    /// Panics in a row; each one doubles the wait before the next collect.
    pub crashes: AtomicU64,
    /// Crashes in all (`host.job.<name>.crashes`).
    pub crashes_total: AtomicU64,
    /// No collect before this.
    pub backoff_until: Mutex<Option<Instant>>,
    /// Crashed too often: not run until its plugin or options change.
    pub parked: AtomicBool,
    /// Paused by hand (`pause JOB`): its ticks pass without a collect.
    pub paused: AtomicBool,
    /// Stopped for good (removed, or the host is stopping).
    pub stopped: AtomicBool,
    /// A service's run is under way.
    pub serving: AtomicBool,
}

impl Job {
    /// Asks the plugin for a collector for `spec`. Its options are checked here: a bad one is
    /// a failure, and nothing starts. The failure's message does not name the job.
    pub fn create(spec: JobSpec, plugin: Arc<Plugin>, ctx: &Context) -> Result<Arc<Job>, Failure> {
        let host = Arc::new(JobHost::new(&spec.name, &plugin.name, ctx.clone()));
        let options =
            toml::to_string(&spec.options).map_err(|e| Failure::error(format!("options: {e}")))?;
        let (runner, style) = match spec.isolation {
            Isolation::Process => {
                let isolated = Isolated::start(
                    &spec,
                    options,
                    Arc::clone(&plugin.copy),
                    Arc::clone(&host),
                    ctx.limits,
                )?;
                let style = if isolated.service {
                    JobStyle::Service
                } else {
                    JobStyle::Pull
                };
                (Runner::Process(isolated), style)
            }
            Isolation::None => {
                let module = plugin.module().map_err(Failure::error)?;
                let ffi_spec = spud_plugin_api::ffi::JobSpec {
                    name: spec.name.as_str().into(),
                    options: options.into(),
                    interval_ms: spec.interval.as_millis() as u64,
                    timeout_ms: spec.timeout.as_millis() as u64,
                };
                // A receiving plugin asks for its sockets while it makes the job.
                let collector = sockets::while_making(&host, || {
                    module.new_job(ffi_spec, plugin_host::handle(&spec.name, Arc::clone(&host)))
                })?;
                let style = collector.style();
                (Runner::InProcess(module, Mutex::new(collector)), style)
            }
        };
        let phase = phase(&spec.name, spec.interval);
        Ok(Arc::new(Job {
            phase,
            last_collect_us: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            crashes_total: AtomicU64::new(0),
            backoff_until: Mutex::new(None),
            parked: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            spec,
            plugin,
            host,
            style,
            runner,
            busy: AtomicBool::new(false),
            call: AtomicU64::new(0),
            wedged: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            serving: AtomicBool::new(false),
        }))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Stores one of the host's own figures about this job: `host.job.<name>.<what>`.
    pub fn report(&self, what: &str, value: impl std::fmt::Display) {
        let key = format!("host.job.{}.{what}", self.spec.name);
        self.host.ctx.sink.report(&key, value);
    }

    /// What it is doing, in one word.
    pub fn state_name(&self) -> &'static str {
        if self.parked.load(Ordering::Relaxed) {
            "failed"
        } else if self.paused.load(Ordering::Relaxed) {
            "paused"
        } else if self.wedged.load(Ordering::Relaxed) {
            "wedged"
        } else if self
            .backoff_until
            .lock()
            .is_some_and(|u| Instant::now() < u)
        {
            "backoff"
        } else {
            "running"
        }
    }

    /// Its running figures, by key (the reporter stores them every few seconds).
    pub fn figures(&self) -> Vec<(String, String)> {
        let key = |what: &str| format!("host.job.{}.{what}", self.spec.name);
        let us = self.last_collect_us.load(Ordering::Relaxed);
        let mut figures = vec![
            (key("collect_ms"), format!("{:.3}", us as f64 / 1000.0)),
            (
                key("samples"),
                self.host.samples.load(Ordering::Relaxed).to_string(),
            ),
        ];
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            figures.push((key("skipped"), skipped.to_string()));
        }
        figures
    }

    /// Records a failed collect or run.
    pub fn failed(&self, error: &str) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(job = %self.spec.name, plugin = %self.plugin.name, "{error}");
        self.report("errors", n);
        self.report("last_error", one_line(error));
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A job's fixed offset within its interval, from its name: stable across restarts, and
/// spreading thousands of jobs over the interval.
pub fn phase(name: &str, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    Duration::from_nanos((h.finish() as u128 % interval.as_nanos().max(1)) as u64)
}
