//! The gatherer: loads plugins, starts jobs and helpers, reports on itself under `host.*`,
//! and stops cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{relative_to, Config, HelperConfig, JobSpec};
use crate::job::{Context, Job};
use crate::loader::{self, Plugin};
use crate::plugins;
use crate::remote::RemoteSink;
use crate::scheduler::Scheduler;
use crate::sink::Sink;

const DEFAULT_LISTEN: &str = "127.0.0.1:9107";
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Who started a job.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    Config,
    Helper(String),
}

struct Daemon {
    ctx: Context,
    plugins: HashMap<String, Arc<Plugin>>,
    scheduler: Scheduler,
    owners: Mutex<HashMap<String, Owner>>,
    remote: Option<Arc<RemoteSink>>,
}

impl Daemon {
    fn report(&self, key: &str, value: impl std::fmt::Display) {
        self.ctx
            .sink
            .set(key, &value.to_string(), spud_server::unix_now());
    }

    /// Starts one job; a failure is one line naming the job, and `host.job.<name>.*` says so.
    fn start_job(&self, spec: JobSpec, owner: Owner) -> bool {
        let name = spec.name.clone();
        let result = match self.plugins.get(&spec.plugin) {
            None => Err(format!(
                "job {name}: no plugin declares the name {:?} (loaded: {})",
                spec.plugin,
                self.plugin_names()
            )),
            Some(plugin) => Job::create(spec, Arc::clone(plugin), &self.ctx),
        };
        match result {
            Ok(job) => {
                self.owners.lock().insert(name, owner);
                self.scheduler.add(job);
                true
            }
            Err(e) => {
                tracing::error!("{e}");
                self.report(&format!("host.job.{name}.state"), "failed");
                self.report(&format!("host.job.{name}.last_error"), &e);
                false
            }
        }
    }

    fn plugin_names(&self) -> String {
        let mut names: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
        names.sort();
        names.join(", ")
    }

    /// One round of a helper: start the jobs it now wants, stop those it no longer does,
    /// leave the rest alone.
    fn run_helper(
        &self,
        helper: &HelperConfig,
        name: &str,
        default_interval: Duration,
        timeout: Duration,
    ) {
        let Some(plugin) = self.plugins.get(&helper.plugin) else {
            tracing::error!(
                "helper {name}: no plugin declares the name {:?}",
                helper.plugin
            );
            return;
        };
        let spec = spud_plugin_api::ffi::JobSpec {
            name: name.into(),
            options: toml::to_string(&helper.options).unwrap_or_default().into(),
            interval_ms: helper.interval.unwrap_or(default_interval).as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
        };
        let host = Job::helper_host(name, plugin, &self.ctx);
        let wanted = match (plugin.module.helper_jobs())(spec, host).into_result() {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!("helper {name}: {e}");
                self.report(&format!("host.helper.{name}.last_error"), e);
                return;
            }
        };
        let owner = Owner::Helper(name.to_string());
        let mut keep = Vec::new();
        for def in wanted {
            let options: toml::Table = match toml::from_str(def.options.as_str()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(
                        "helper {name}: job {}: bad options: {}",
                        def.name,
                        e.message()
                    );
                    continue;
                }
            };
            let spec = JobSpec {
                name: def.name.to_string(),
                plugin: def.plugin.to_string(),
                interval: match def.interval_ms {
                    0 => default_interval,
                    ms => Duration::from_millis(ms),
                },
                timeout,
                options,
            };
            keep.push(spec.name.clone());
            let current = self
                .scheduler
                .jobs()
                .into_iter()
                .find(|j| j.name() == spec.name);
            match (current, self.owners.lock().get(&spec.name).cloned()) {
                (Some(job), Some(o)) if o == owner && job.spec == spec => continue,
                (Some(_), Some(Owner::Config)) => {
                    tracing::warn!(
                        "helper {name}: job {} is defined in the config; the helper's is ignored",
                        spec.name
                    );
                    continue;
                }
                _ => {}
            }
            self.start_job(spec, owner.clone());
        }
        let gone: Vec<String> = self
            .owners
            .lock()
            .iter()
            .filter(|(job, o)| **o == owner && !keep.contains(job))
            .map(|(job, _)| job.clone())
            .collect();
        for job in gone {
            tracing::info!("helper {name}: job {job} is no longer wanted; stopping it");
            self.scheduler.remove(&job);
            self.owners.lock().remove(&job);
        }
    }

    fn report_self(&self) {
        let jobs = self.scheduler.jobs();
        for job in &jobs {
            job.report_figures();
        }
        self.report("host.jobs", jobs.len());
        self.report("host.plugins", self.plugins.len());
        self.report("host.generations", loader::generations());
        let samples: u64 = jobs
            .iter()
            .map(|j| j.host.samples.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        self.report("host.samples", samples);
        let late = self.scheduler.take_lateness();
        if !late.is_empty() {
            let pick = |q: f64| {
                late[((late.len() as f64 * q) as usize).min(late.len() - 1)] as f64 / 1000.0
            };
            self.report("host.scheduler.collects", late.len());
            self.report(
                "host.scheduler.lateness_p50_ms",
                format_args!("{:.3}", pick(0.5)),
            );
            self.report(
                "host.scheduler.lateness_p99_ms",
                format_args!("{:.3}", pick(0.99)),
            );
            self.report(
                "host.scheduler.lateness_max_ms",
                format_args!("{:.3}", pick(1.0)),
            );
        }
        if let Some(remote) = &self.remote {
            self.report("host.remote.buffered", remote.buffered());
            self.report("host.remote.dropped", remote.dropped());
            self.report("host.remote.connected", u8::from(remote.connected()));
        }
    }
}

/// Runs the gatherer until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _lock = lock(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shutdown = CancellationToken::new();
    runtime.spawn(stop_on_signal(shutdown.clone()));

    // Where samples go.
    let (sink, remote, embedded) = match &config.server.remote {
        Some(addr) => {
            let remote = RemoteSink::start(addr.clone(), config.server.buffer.unwrap_or(100_000));
            tracing::info!("pushing samples to the remote server {addr}");
            (Sink::Remote(Arc::clone(&remote)), Some(remote), None)
        }
        None => {
            let state = config
                .server
                .state
                .as_ref()
                .map(|p| relative_to(config_path, p));
            let server = embedded_server(&runtime, &config, state.clone(), shutdown.clone())?;
            (
                Sink::Embedded(server.0.clone()),
                None,
                Some((server, state)),
            )
        }
    };

    let plugins_dir = config.plugins_dir(config_path);
    let (plugins, problems) = plugins::load_dir(&plugins_dir);
    for p in &problems {
        tracing::error!("{p}");
    }
    let ctx = Context {
        sink,
        vars: Arc::new(config.vars_as_text()),
    };
    let daemon = Arc::new(Daemon {
        ctx,
        plugins,
        scheduler: Scheduler::start(config.host.workers),
        owners: Mutex::new(HashMap::new()),
        remote,
    });
    for plugin in daemon.plugins.values() {
        let key = |what: &str| format!("host.plugin.{}.{what}", plugin.name);
        daemon.report(&key("status"), "loaded");
        daemon.report(&key("version"), &plugin.version);
        daemon.report(&key("generation"), plugin.generation);
        daemon.report(
            &key("load_ms"),
            format_args!("{:.3}", plugin.load_time.as_secs_f64() * 1000.0),
        );
    }
    for spec in config.job_specs() {
        daemon.start_job(spec, Owner::Config);
    }
    for helper in &config.helpers {
        let daemon = Arc::clone(&daemon);
        let helper = helper.clone();
        let (interval, timeout) = (config.host.interval, config.host.timeout);
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("helper".into())
            .spawn(move || {
                let name = helper.name.clone().unwrap_or_else(|| helper.plugin.clone());
                let every = helper.interval.unwrap_or(interval);
                while !stop.is_cancelled() {
                    daemon.run_helper(&helper, &name, interval, timeout);
                    sleep_unless(&stop, every);
                }
            })?;
    }
    {
        let daemon = Arc::clone(&daemon);
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || {
                while !stop.is_cancelled() {
                    daemon.report_self();
                    sleep_unless(&stop, REPORT_EVERY);
                }
            })?;
    }
    tracing::info!(
        "running {} jobs from {} plugins in {}",
        daemon.scheduler.jobs().len(),
        daemon.plugins.len(),
        plugins_dir.display()
    );

    runtime.block_on(shutdown.cancelled());
    tracing::info!("stopping");
    let daemon = Arc::into_inner(daemon);
    if let Some(mut daemon) = daemon {
        daemon.scheduler.stop(Duration::from_secs(2));
        if let Some(remote) = &daemon.remote {
            remote.flush_and_stop(Duration::from_secs(5));
        }
    }
    if let Some(((server, serving), state)) = embedded {
        let _ = runtime.block_on(serving);
        if let Some(path) = state {
            match spud_server::snapshot::save(&server, &path) {
                Ok(n) => tracing::info!("snapshot written: {n} samples"),
                Err(e) => tracing::error!("snapshot not written, the previous one is kept: {e}"),
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

type Serving = tokio::task::JoinHandle<std::io::Result<()>>;

fn embedded_server(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    state: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(spud_server::Server, Serving)> {
    let server_config = spud_server::Config::default();
    let server = match &state {
        Some(path) if path.exists() => {
            match spud_server::snapshot::load(path, server_config.clone()) {
                Ok(s) => s,
                Err(e) => {
                    let moved = spud_server::snapshot::move_aside(path)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|m| format!("nowhere ({m})"));
                    tracing::error!("{e}; moved it to {moved} and starting empty");
                    spud_server::Server::new(server_config)
                }
            }
        }
        _ => spud_server::Server::new(server_config),
    };
    let addr = config
        .server
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("the embedded stat server cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("stat server listening on {local}");
    let options = spud_server::net::ServeOptions::for_addr(local);
    let serving = runtime.spawn(spud_server::net::serve(
        server.clone(),
        listener,
        options,
        shutdown,
    ));
    Ok((server, serving))
}

/// remstats' lock: two hosts must not run one config.
fn lock(config_path: &Path) -> Result<std::fs::File> {
    let mut name = config_path.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another spud-host is already running with {} (it holds {})",
            config_path.display(),
            path.display()
        )
    })?;
    Ok(file)
}

fn sleep_unless(stop: &CancellationToken, d: Duration) {
    let deadline = std::time::Instant::now() + d;
    while !stop.is_cancelled() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}

/// `check-config`: every problem, one line each. Loads every plugin and asks each job's
/// plugin to accept its options.
pub fn check(config_path: &Path) -> Vec<String> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return e.problems,
    };
    let (plugins, mut problems) = plugins::load_dir(&config.plugins_dir(config_path));
    let ctx = Context {
        sink: Sink::Embedded(spud_server::Server::new(spud_server::Config::default())),
        vars: Arc::new(config.vars_as_text()),
    };
    for spec in config.job_specs() {
        match plugins.get(&spec.plugin) {
            None => problems.push(format!(
                "job {}: no plugin declares the name {:?}",
                spec.name, spec.plugin
            )),
            Some(plugin) => {
                if let Err(e) = Job::create(spec, Arc::clone(plugin), &ctx) {
                    problems.push(e);
                }
            }
        }
    }
    for helper in &config.helpers {
        match plugins.get(&helper.plugin) {
            None => problems.push(format!(
                "helper: no plugin declares the name {:?}",
                helper.plugin
            )),
            Some(p) if !p.is_helper => problems.push(format!(
                "helper: plugin {:?} is not a helper",
                helper.plugin
            )),
            Some(_) => {}
        }
    }
    problems
}
