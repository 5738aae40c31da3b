//! One job: its collector, the host context its plugin sees, and its counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RStr, RString};
use parking_lot::Mutex;
use spud_plugin_api::ffi::{CollectorBox, HostApi, HostApi_TO, JobStyle, Level};

use crate::config::JobSpec;
use crate::isolation::{Isolated, Isolation, Limits};
use crate::loader::Plugin;
use crate::plugin_side::{level_number, var, Counts, StopFlag};
use crate::sink::Sink;

/// What every job shares: where samples go and the config's `[vars]` (replaced in place
/// when the config changes: a new value needs no restart).
#[derive(Clone)]
pub struct Context {
    pub sink: Sink,
    pub vars: Arc<parking_lot::RwLock<HashMap<String, String>>>,
    /// What an isolated job's worker may use.
    pub limits: Limits,
}

/// Where a job's collector runs.
pub enum Runner {
    /// In the host's process.
    InProcess(Mutex<CollectorBox>),
    /// In a worker process of its own (`isolation = "process"`).
    Process(Isolated),
}

/// A collect or run that failed, and whether it counts as a crash (a panic, a worker that
/// died, hung or outgrew its limits): crashes back off, plain errors do not.
#[derive(Debug)]
pub struct Failure {
    pub text: String,
    pub crash: bool,
}

impl Runner {
    pub fn collect(&self) -> Result<(), Failure> {
        match self {
            Runner::InProcess(c) => in_process(c.lock().collect()),
            Runner::Process(p) => p.collect(),
        }
    }

    pub fn run(&self) -> Result<(), Failure> {
        match self {
            Runner::InProcess(c) => in_process(c.lock().run()),
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
            Runner::InProcess(_) => None,
            Runner::Process(p) => p.pid(),
        }
    }
}

fn in_process(result: RResult<(), RString>) -> Result<(), Failure> {
    result.into_result().map_err(|e| {
        let text = e.to_string();
        // The plugin side turns a panic into "collect panicked: ...".
        let crash = text.starts_with("collect panicked:");
        Failure { text, crash }
    })
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
    /// No collect before this.
    pub backoff_until: Mutex<Option<Instant>>,
    /// Crashed too often: not run until its plugin or options change.
    pub parked: AtomicBool,
    /// Paused by hand (`pause JOB`): its ticks pass without a collect.
    pub paused: AtomicBool,
    /// Stopped for good (removed, or the host is stopping).
    pub stopped: AtomicBool,
}

impl Job {
    /// Asks the plugin for a collector for `spec`. Its options are checked here: a bad one is
    /// an error naming the job, and nothing starts.
    pub fn create(spec: JobSpec, plugin: Arc<Plugin>, ctx: &Context) -> Result<Arc<Job>, String> {
        let host = Arc::new(JobHost::new(&spec.name, &plugin.name, ctx.clone()));
        let options = toml::to_string(&spec.options)
            .map_err(|e| format!("job {}: options: {e}", spec.name))?;
        let named = |e: String| {
            if e.starts_with(&format!("job {}", spec.name)) {
                e
            } else {
                format!("job {}: {e}", spec.name)
            }
        };
        let (runner, style) = match spec.isolation {
            Isolation::Process => {
                let isolated = Isolated::start(
                    &spec,
                    options,
                    Arc::clone(&plugin),
                    Arc::clone(&host),
                    ctx.limits,
                )
                .map_err(named)?;
                let style = if isolated.service {
                    JobStyle::Service
                } else {
                    JobStyle::Pull
                };
                (Runner::Process(isolated), style)
            }
            Isolation::None => {
                let module = plugin.module().map_err(named)?;
                let ffi_spec = spud_plugin_api::ffi::JobSpec {
                    name: spec.name.as_str().into(),
                    options: options.into(),
                    interval_ms: spec.interval.as_millis() as u64,
                    timeout_ms: spec.timeout.as_millis() as u64,
                };
                let host_box = HostApi_TO::from_value(SharedHost(Arc::clone(&host)), TD_Opaque);
                let collector = (module.new_job())(ffi_spec, host_box)
                    .into_result()
                    .map_err(|e| named(e.to_string()))?;
                let style = collector.style();
                (Runner::InProcess(Mutex::new(collector)), style)
            }
        };
        let phase = crate::scheduler::phase(&spec.name, spec.interval);
        Ok(Arc::new(Job {
            phase,
            last_collect_us: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
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
        }))
    }

    /// The host context for one round of a helper (its logs name the helper).
    pub fn helper_host(
        name: &str,
        plugin: &Plugin,
        ctx: &Context,
    ) -> spud_plugin_api::ffi::HostBox {
        let host = Arc::new(JobHost::new(name, &plugin.name, ctx.clone()));
        HostApi_TO::from_value(SharedHost(host), TD_Opaque)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Stores one of the host's own figures about this job: `host.job.<name>.<what>`.
    pub fn report(&self, what: &str, value: impl std::fmt::Display) {
        let key = format!("host.job.{}.{what}", self.spec.name);
        self.host
            .ctx
            .sink
            .set(&key, &value.to_string(), spud_server::unix_now());
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

    /// Reports its running figures (the reporter calls this every few seconds).
    pub fn report_figures(&self) {
        let us = self.last_collect_us.load(Ordering::Relaxed);
        self.report("collect_ms", format_args!("{:.3}", us as f64 / 1000.0));
        self.report("samples", self.host.samples.load(Ordering::Relaxed));
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            self.report("skipped", skipped);
        }
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

/// The host as one job's plugin sees it.
pub struct JobHost {
    job: String,
    plugin: String,
    pub ctx: Context,
    counts: Counts,
    pub samples: AtomicU64,
    stop: StopFlag,
}

impl JobHost {
    fn new(job: &str, plugin: &str, ctx: Context) -> JobHost {
        JobHost {
            job: job.to_string(),
            plugin: plugin.to_string(),
            ctx,
            counts: Counts::default(),
            samples: AtomicU64::new(0),
            stop: StopFlag::default(),
        }
    }

    /// Tells a service to stop.
    pub fn request_stop(&self) {
        self.stop.request();
    }

    fn full_key(&self, key: &str, absolute: bool) -> String {
        if absolute {
            key.to_string()
        } else {
            format!("{}.{key}", self.job)
        }
    }

    /// A line of the job's plugin (from a worker: 1 error … 5 trace).
    pub(crate) fn log(&self, level: u8, message: &str) {
        let (job, plugin) = (&self.job, &self.plugin);
        match level {
            0 | 1 => tracing::error!(job = %job, plugin = %plugin, "{message}"),
            2 => tracing::warn!(job = %job, plugin = %plugin, "{message}"),
            3 => tracing::info!(job = %job, plugin = %plugin, "{message}"),
            4 => tracing::debug!(job = %job, plugin = %plugin, "{message}"),
            _ => tracing::trace!(job = %job, plugin = %plugin, "{message}"),
        }
    }

    pub(crate) fn store(&self, key: &str, value: &str, time: Option<u64>) {
        if !spud_server::is_valid_key(key) {
            tracing::warn!(job = %self.job, plugin = %self.plugin, "sample dropped: invalid key {key:?}");
            return;
        }
        if value.contains('\n') {
            tracing::warn!(job = %self.job, plugin = %self.plugin, "sample dropped: the value for {key} has a line break");
            return;
        }
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.ctx
            .sink
            .set(key, value, time.unwrap_or_else(spud_server::unix_now));
    }
}

/// The `HostApi` handed across the boundary; the host keeps its own reference.
struct SharedHost(Arc<JobHost>);

impl HostApi for SharedHost {
    fn set(&self, key: RStr<'_>, value: RStr<'_>, time: ROption<u64>, absolute: bool) {
        let key = self.0.full_key(key.as_str(), absolute);
        self.0.store(&key, value.as_str(), time.into_option());
    }

    fn count(&self, key: RStr<'_>, delta: f64, absolute: bool) {
        let key = self.0.full_key(key.as_str(), absolute);
        let total = self.0.counts.add(&key, delta);
        self.0.store(&key, &total.to_string(), None);
    }

    fn log(&self, level: Level, message: RStr<'_>) {
        self.0.log(level_number(level), message.as_str());
    }

    fn var(&self, name: RStr<'_>) -> ROption<RString> {
        var(&self.0.ctx.vars.read(), name.as_str())
    }

    fn stop_requested(&self, ms: u64) -> bool {
        self.0.stop.wait(ms)
    }
}
