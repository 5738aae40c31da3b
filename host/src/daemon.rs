//! The gatherer: what should run (the config's jobs and the helpers' jobs), what is loaded
//! (plugins by name, plugin files by path), and the scheduler that runs it. Startup and every
//! reload go through the same few operations here; `reload.rs` decides when to call them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{relative_to, Config, HelperConfig, JobSpec};
use crate::job::{Context, Job};
use crate::loader::{self, Plugin};
use crate::output::RemoteWrite;
use crate::scheduler::Scheduler;
use crate::sink::{Sink, Target};
use crate::{plugins, reload, watch};
use spud_server::auth::Tokens;
use spud_server::endpoint::Endpoint;
use spud_server::pusher::Pusher;

const DEFAULT_LISTEN: &str = "127.0.0.1:9107";
const REPORT_EVERY: Duration = Duration::from_secs(5);
const POLL_EVERY: Duration = Duration::from_secs(30);

/// Who wants a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    Config,
    Helper(String),
}

/// A job that should run.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub spec: JobSpec,
    pub owner: Owner,
}

/// A plugin file as last loaded.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub hash: u64,
    pub name: String,
}

/// What changes on reload.
pub struct State {
    pub config: Config,
    pub config_hash: u64,
    pub plugins: HashMap<String, Arc<Plugin>>,
    pub files: HashMap<PathBuf, LoadedFile>,
    /// Content hashes of files that did not load, so a poll does not report them again.
    pub failed_files: HashMap<PathBuf, u64>,
    pub wanted: BTreeMap<String, Wanted>,
    /// Running helper threads, by helper name, with their config and stop token.
    pub helpers: HashMap<String, (HelperConfig, CancellationToken)>,
}

pub struct Daemon {
    pub config_path: PathBuf,
    pub plugins_dir: PathBuf,
    pub ctx: Context,
    pub scheduler: Scheduler,
    pub remote: Option<Arc<Pusher>>,
    pub state: Mutex<State>,
    pub stop: CancellationToken,
    maps_warned: std::sync::atomic::AtomicBool,
    /// Jobs paused by hand; they stay paused when a reload makes them anew.
    paused: Mutex<std::collections::HashSet<String>>,
}

impl Daemon {
    pub fn report(&self, key: &str, value: impl std::fmt::Display) {
        let value = value.to_string().replace(['\r', '\n'], " ");
        self.ctx.sink.set(key, &value, spud_server::unix_now());
    }

    /// Starts `spec`, or replaces the running job of that name. A new job is made (and its
    /// options accepted) before the old one stops; if it cannot be made, the old one keeps
    /// running and the error is reported. Returns whether the new job runs.
    pub fn start(&self, state: &State, spec: &JobSpec) -> bool {
        let result = match state.plugins.get(&spec.plugin) {
            None => Err(format!(
                "job {}: no plugin declares the name {:?} (loaded: {})",
                spec.name,
                spec.plugin,
                names(&state.plugins)
            )),
            Some(plugin) => Job::create(spec.clone(), Arc::clone(plugin), &self.ctx),
        };
        self.install(spec, result)
    }

    /// Puts a newly made job in place of the running one; or, if it could not be made,
    /// reports why and leaves the running one alone.
    pub fn install(&self, spec: &JobSpec, made: Result<Arc<Job>, String>) -> bool {
        let name = &spec.name;
        match made {
            Ok(job) => {
                if self.paused.lock().contains(name) {
                    job.paused.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                self.scheduler.add(job);
                true
            }
            Err(e) => {
                let running = self.scheduler.get(name).is_some();
                if running {
                    tracing::error!("{e}; the running version of the job stays");
                } else {
                    tracing::error!("{e}");
                    self.report(&format!("host.job.{name}.state"), "failed");
                }
                self.report(&format!("host.job.{name}.last_error"), &e);
                false
            }
        }
    }

    /// Stops a job and forgets it.
    pub fn forget(&self, state: &mut State, name: &str) {
        state.wanted.remove(name);
        if self.scheduler.remove(name).is_some() {
            self.report(&format!("host.job.{name}.state"), "stopped");
        }
    }

    /// Wants `spec` and starts it (a new job, or a changed one).
    pub fn want(&self, state: &mut State, spec: JobSpec, owner: Owner) {
        let changed = state
            .wanted
            .get(&spec.name)
            .is_none_or(|w| w.spec != spec || w.owner != owner);
        let running = self.scheduler.get(&spec.name).is_some();
        state.wanted.insert(
            spec.name.clone(),
            Wanted {
                spec: spec.clone(),
                owner,
            },
        );
        if changed || !running {
            self.start(state, &spec);
        }
    }

    /// Starts a helper's thread: each round asks its plugin for the jobs it wants.
    pub fn start_helper(self: &Arc<Self>, state: &mut State, helper: HelperConfig) {
        let name = helper_name(&helper);
        let stop = self.stop.child_token();
        state
            .helpers
            .insert(name.clone(), (helper.clone(), stop.clone()));
        let daemon = Arc::clone(self);
        let (interval, timeout) = (state.config.host.interval, state.config.host.timeout);
        std::thread::Builder::new()
            .name(format!("helper-{name}"))
            .spawn(move || {
                let every = helper.interval.unwrap_or(interval);
                while !stop.is_cancelled() {
                    daemon.helper_round(&helper, &name, interval, timeout, &stop);
                    sleep_unless(&stop, every);
                }
            })
            .expect("spawn a helper thread");
    }

    /// Stops a helper and every job it started.
    pub fn stop_helper(&self, state: &mut State, name: &str) {
        if let Some((_, stop)) = state.helpers.remove(name) {
            stop.cancel();
        }
        let owner = Owner::Helper(name.to_string());
        let theirs: Vec<String> = state
            .wanted
            .iter()
            .filter(|(_, w)| w.owner == owner)
            .map(|(n, _)| n.clone())
            .collect();
        for job in theirs {
            self.forget(state, &job);
        }
    }

    /// One round of a helper: start the jobs it now wants, stop those it no longer does,
    /// leave the rest alone.
    fn helper_round(
        &self,
        helper: &HelperConfig,
        name: &str,
        default_interval: Duration,
        timeout: Duration,
        stop: &CancellationToken,
    ) {
        let plugin = self.state.lock().plugins.get(&helper.plugin).cloned();
        let Some(plugin) = plugin else {
            tracing::warn!(
                "helper {name}: no plugin declares the name {:?} (yet)",
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
        let host = Job::helper_host(name, &plugin, &self.ctx);
        let module = match plugin.module() {
            Ok(module) => module,
            Err(e) => {
                tracing::error!("helper {name}: {e}");
                return;
            }
        };
        let wanted = match (module.helper_jobs())(spec, host).into_result() {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!("helper {name}: {e}");
                self.report(&format!("host.helper.{name}.last_error"), e);
                return;
            }
        };
        let mut state = self.state.lock();
        // A helper stopped (by a reload) while it was asking: its answer no longer counts.
        if stop.is_cancelled() {
            return;
        }
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
                isolation: state.config.isolation(None, &def.plugin),
            };
            if state
                .wanted
                .get(&spec.name)
                .is_some_and(|w| w.owner == Owner::Config)
            {
                tracing::warn!(
                    "helper {name}: job {} is defined in the config; the helper's is ignored",
                    spec.name
                );
                continue;
            }
            keep.push(spec.name.clone());
            self.want(&mut state, spec, owner.clone());
        }
        let gone: Vec<String> = state
            .wanted
            .iter()
            .filter(|(job, w)| w.owner == owner && !keep.contains(job))
            .map(|(job, _)| job.clone())
            .collect();
        for job in gone {
            tracing::info!("helper {name}: job {job} is no longer wanted; stopping it");
            self.forget(&mut state, &job);
        }
    }

    /// Pauses or resumes a job by hand.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), String> {
        let job = self
            .scheduler
            .get(name)
            .ok_or_else(|| format!("no running job is called {name}"))?;
        job.paused
            .store(paused, std::sync::atomic::Ordering::Relaxed);
        let mut set = self.paused.lock();
        if paused {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
        self.report(&format!("host.job.{name}.state"), job.state_name());
        Ok(())
    }

    /// The `jobs` listing: every wanted job, running or not.
    pub fn job_lines(&self) -> Vec<String> {
        let state = self.state.lock();
        state
            .wanted
            .values()
            .map(|w| {
                let every = humantime::format_duration(w.spec.interval);
                match self.scheduler.get(&w.spec.name) {
                    Some(job) => format!(
                        "{} {} plugin={} generation={} every={every} errors={} timeouts={}",
                        w.spec.name,
                        job.state_name(),
                        w.spec.plugin,
                        job.plugin.generation,
                        job.errors.load(std::sync::atomic::Ordering::Relaxed),
                        job.timeouts.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    None => {
                        let why = if state.plugins.contains_key(&w.spec.plugin) {
                            "failed"
                        } else {
                            "waiting"
                        };
                        format!(
                            "{} {why} plugin={} generation=0 every={every} errors=0 timeouts=0",
                            w.spec.name, w.spec.plugin
                        )
                    }
                }
            })
            .collect()
    }

    /// The jobs for the HTTP API: what `jobs` says, with the last error from the store.
    pub fn jobs_view(&self) -> serde_json::Value {
        let state = self.state.lock();
        let last_error = |name: &str| -> Option<String> {
            let Target::Embedded(server) = &self.ctx.sink.target else {
                return None;
            };
            let history = server.get(&format!("host.job.{name}.last_error"))?;
            Some(history.first()?.value.to_string_lossy())
        };
        let jobs: Vec<serde_json::Value> = state
            .wanted
            .values()
            .map(|w| {
                let name = &w.spec.name;
                let mut view = serde_json::json!({
                    "name": name,
                    "plugin": w.spec.plugin,
                    "every": humantime::format_duration(w.spec.interval).to_string(),
                });
                match self.scheduler.get(name) {
                    Some(job) => {
                        use std::sync::atomic::Ordering::Relaxed;
                        view["state"] = job.state_name().into();
                        view["generation"] = job.plugin.generation.into();
                        view["errors"] = job.errors.load(Relaxed).into();
                        view["timeouts"] = job.timeouts.load(Relaxed).into();
                        if let Some(pid) = job.runner.worker_pid() {
                            view["worker_pid"] = pid.into();
                        }
                    }
                    None => {
                        let why = if state.plugins.contains_key(&w.spec.plugin) {
                            "failed"
                        } else {
                            "waiting"
                        };
                        view["state"] = why.into();
                        view["generation"] = 0.into();
                        view["errors"] = 0.into();
                        view["timeouts"] = 0.into();
                    }
                }
                if let Some(e) = last_error(name) {
                    view["last_error"] = e.into();
                }
                view
            })
            .collect();
        jobs.into()
    }

    /// The loaded plugins for the HTTP API.
    pub fn plugins_view(&self) -> serde_json::Value {
        let state = self.state.lock();
        let mut plugins: Vec<_> = state.plugins.values().collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "generation": p.generation,
                    "file": p.file.display().to_string(),
                    "helper": p.is_helper,
                })
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn report_self(&self) {
        let jobs = self.scheduler.jobs();
        for job in &jobs {
            job.report_figures();
        }
        for o in self.ctx.sink.outputs.iter() {
            use std::sync::atomic::Ordering::Relaxed;
            let key = |what: &str| format!("host.output.{}.{what}", o.name);
            self.report(&key("sent"), o.sent.load(Relaxed));
            self.report(&key("buffered"), o.buffered());
            self.report(&key("dropped"), o.dropped.load(Relaxed));
            self.report(&key("refused"), o.refused.load(Relaxed));
        }
        self.report("host.jobs", jobs.len());
        self.report("host.plugins", self.state.lock().plugins.len());
        self.report("host.generations", loader::generations());
        self.report_maps();
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
            self.report("host.remote.sent", remote.sent());
            self.report("host.remote.buffered", remote.buffered());
            self.report("host.remote.dropped", remote.dropped());
            self.report("host.remote.connected", u8::from(remote.connected()));
        }
    }

    /// Every plugin generation stays mapped (abi_stable never unloads): count the maps, and
    /// say so once when half the kernel's limit is used.
    fn report_maps(&self) {
        let maps = std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().count())
            .unwrap_or(0);
        let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65_530);
        self.report("host.maps", maps);
        self.report("host.maps_limit", limit);
        if maps * 2 > limit
            && !self
                .maps_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "{maps} memory maps of the kernel's {limit} are in use after {} plugin loads: \
                 each reload keeps the old library mapped. Restart spud-host to release them.",
                loader::generations()
            );
        }
    }
}

fn names(plugins: &HashMap<String, Arc<Plugin>>) -> String {
    let mut names: Vec<&str> = plugins.keys().map(String::as_str).collect();
    names.sort();
    names.join(", ")
}

pub fn helper_name(helper: &HelperConfig) -> String {
    helper.name.clone().unwrap_or_else(|| helper.plugin.clone())
}

pub fn hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Runs the gatherer until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config = Config::parse(&text, config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _lock = lock(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = CancellationToken::new();
    let (changes, changed) = std::sync::mpsc::channel();
    runtime.spawn(signals(stop.clone(), changes.clone()));

    let exporter = Arc::new(spud_server::metrics::Exporter::new(
        spud_server::metrics::Rules::new(&config.metrics).map_err(|e| anyhow::anyhow!("{e}"))?,
    ));

    // Besides the store: the [[output]]s, stopped after the last collect.
    let outputs_stop = CancellationToken::new();
    let outputs: Vec<Arc<RemoteWrite>> = config
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let name = o.name(i);
            tracing::info!("output {name}: remote write to {}", o.url);
            RemoteWrite::start(name, o.clone(), Arc::clone(&exporter), outputs_stop.clone())
        })
        .collect();

    // Where samples go.
    let (sink, remote, embedded) = match &config.server.remote {
        Some(addr) => {
            let token = config
                .server
                .token_file
                .as_ref()
                .map(|p| relative_to(config_path, p));
            let file = |p: &Option<PathBuf>| p.as_ref().map(|p| relative_to(config_path, p));
            let (ca, cert, key) = (
                file(&config.server.tls_ca),
                file(&config.server.tls_cert),
                file(&config.server.tls_key),
            );
            let endpoint = Endpoint::new(addr.clone())
                .token_file(token.as_deref())
                .and_then(|e| e.tls(ca.as_deref(), cert.as_deref().zip(key.as_deref())))
                .map_err(anyhow::Error::msg)?;
            let remote = Pusher::start(endpoint, config.server.buffer.unwrap_or(100_000));
            tracing::info!("pushing samples to the remote server {addr}");
            (Target::Remote(Arc::clone(&remote)), Some(remote), None)
        }
        None => {
            let state = config
                .server
                .state
                .as_ref()
                .map(|p| relative_to(config_path, p));
            let server = embedded_server(
                &runtime,
                &config,
                config_path,
                state.clone(),
                Arc::clone(&exporter),
                stop.clone(),
            )?;
            (
                Target::Embedded(server.0.clone()),
                None,
                Some((server, state)),
            )
        }
    };

    // One spelling for every plugin file, whether it came from a directory listing or a
    // file event (which reports absolute paths).
    let plugins_dir = config.plugins_dir(config_path);
    let plugins_dir = plugins_dir.canonicalize().unwrap_or(plugins_dir);
    let daemon = Arc::new(Daemon {
        config_path: config_path.to_path_buf(),
        plugins_dir: plugins_dir.clone(),
        ctx: Context {
            sink: Sink {
                target: sink,
                outputs: outputs.clone().into(),
            },
            vars: Arc::new(parking_lot::RwLock::new(config.vars_as_text())),
            limits: config.host.limits(),
        },
        scheduler: Scheduler::start(config.host.workers),
        remote,
        state: Mutex::new(State {
            config: config.clone(),
            config_hash: hash(text.as_bytes()),
            plugins: HashMap::new(),
            files: HashMap::new(),
            failed_files: HashMap::new(),
            wanted: BTreeMap::new(),
            helpers: HashMap::new(),
        }),
        stop: stop.clone(),
        maps_warned: Default::default(),
        paused: Default::default(),
    });
    let control = Arc::new(crate::control::HostControl {
        daemon: Arc::downgrade(&daemon),
        changes: std::sync::Mutex::new(changes.clone()),
    });
    match (&daemon.ctx.sink.target, config.host.control) {
        (Target::Embedded(server), _) => server.set_control(control),
        (Target::Remote(_), Some(addr)) => {
            // A server of its own that holds nothing: it is there to answer control.
            let server = spud_server::Server::new(spud_server::Config::default());
            server.set_control(control);
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("the control listener cannot listen on {addr}"))?;
            tracing::info!("control listening on {}", listener.local_addr()?);
            let options = spud_server::net::ServeOptions::for_addr(listener.local_addr()?);
            runtime.spawn(spud_server::net::serve(
                server,
                listener,
                options,
                stop.clone(),
            ));
        }
        (Target::Remote(_), None) => {}
    }

    // Startup is a reload from nothing: every plugin file, then every job and helper.
    reload::startup(&daemon);

    let _watcher = match watch::watch(&plugins_dir, config_path, changes.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); polling every {POLL_EVERY:?} instead",
                plugins_dir.display()
            );
            None
        }
    };
    watch::poll(POLL_EVERY, changes.clone());
    {
        let daemon = Arc::clone(&daemon);
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || reload::run(&daemon, &changed))?;
    }
    {
        let daemon = Arc::clone(&daemon);
        let stop = stop.clone();
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
        daemon.state.lock().plugins.len(),
        plugins_dir.display()
    );

    runtime.block_on(stop.cancelled());
    tracing::info!("stopping");
    drop(changes);
    daemon
        .state
        .lock()
        .helpers
        .values()
        .for_each(|(_, s)| s.cancel());
    daemon.scheduler.stop(Duration::from_secs(2));
    if let Some(remote) = &daemon.remote {
        remote.flush_and_stop(Duration::from_secs(5));
    }
    outputs_stop.cancel();
    for output in &outputs {
        output.finish(Duration::from_secs(5));
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
    config_path: &Path,
    state: Option<PathBuf>,
    exporter: Arc<spud_server::metrics::Exporter>,
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
    let http_addr = config.server.http_addr().map_err(|e| anyhow::anyhow!(e))?;
    let tokens = match &config.server.tokens {
        Some(path) => Some(Arc::new(
            Tokens::load(&relative_to(config_path, path)).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let file = |p: &Option<PathBuf>| p.as_ref().map(|p| relative_to(config_path, p));
    let tls = match (file(&config.server.tls_cert), file(&config.server.tls_key)) {
        (Some(cert), Some(key)) => Some(
            spud_server::tls::server_config(
                &cert,
                &key,
                file(&config.server.tls_client_ca).as_deref(),
            )
            .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    spud_server::auth::protected_mode(
        tokens.is_some() || config.server.tls_client_ca.is_some() || config.server.no_auth,
        std::iter::once(addr).chain(http_addr),
        "[server] tokens = \"FILE\"",
        "[server] no_auth = true",
    )
    .map_err(anyhow::Error::msg)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("the embedded stat server cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("stat server listening on {local}");
    if let Some(addr) = http_addr {
        let http = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("the embedded stat server cannot serve HTTP on {addr}"))?;
        tracing::info!("HTTP on http://{}/", http.local_addr()?);
        runtime.spawn(spud_server::http::serve(
            server.clone(),
            exporter,
            tokens.clone(),
            tls.clone(),
            http,
            shutdown.clone(),
        ));
    }
    let mut options = spud_server::net::ServeOptions::for_addr(local);
    options.tokens = tokens;
    options.tls = tls;
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

pub fn sleep_unless(stop: &CancellationToken, d: Duration) {
    let deadline = std::time::Instant::now() + d;
    while !stop.is_cancelled() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

/// SIGINT and SIGTERM stop; SIGHUP looks at everything again.
async fn signals(stop: CancellationToken, changes: std::sync::mpsc::Sender<watch::Change>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = stop.cancelled() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: looking at the config and every plugin again");
                let _ = changes.send(watch::Change::Everything);
            }
        }
    }
    stop.cancel();
}

/// `check-config`: every problem, one line each. Loads every plugin and asks each job's
/// plugin to accept its options.
pub fn check(config_path: &Path) -> Vec<String> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return e.problems,
    };
    let (plugins, mut problems) =
        plugins::load_dir(&config.plugins_dir(config_path), config.probe());
    let ctx = Context {
        sink: Sink::new(Target::Embedded(spud_server::Server::new(
            spud_server::Config::default(),
        ))),
        vars: Arc::new(parking_lot::RwLock::new(config.vars_as_text())),
        limits: config.host.limits(),
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
