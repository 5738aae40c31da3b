//! The gatherer's operations: the few things startup, reload, helpers and control do to
//! the state and the scheduler. Start a job (the new one made before the old one stops),
//! forget one, want one, pause one; and stop everything at the end.

pub mod helpers;
pub mod report;
pub mod state;
pub mod stop;
pub mod views;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::config::Config;
use crate::diff::ConfigDiff;
use crate::gatherer::state::{KnownFile, Owner, Published, State, Wanted};
use crate::gatherer::stop::Stop;
use crate::jobs::job::Job;
use crate::jobs::job_host::Context;
use crate::jobs::scheduler::Scheduler;
use crate::loading::loader::{self, Plugin};
use crate::model::{Failure, JobSpec};
use crate::signature::Signed;
use crate::sinks::outputs::{self, OutputConfig, Started};
use crate::sinks::{Sink, Target};
use spud_server::faces::metrics::Exporter;

/// The running gatherer.
pub struct Gatherer {
    pub config_path: PathBuf,
    pub plugins_dir: PathBuf,
    pub ctx: Context,
    pub scheduler: Scheduler,
    state: Mutex<State>,
    /// What the views read, never the state itself.
    published: RwLock<Arc<Published>>,
    /// Stopped when the host stops.
    pub stop: Arc<Stop>,
    /// Jobs paused by hand; they stay paused when a reload makes them anew.
    paused: Mutex<HashSet<String>>,
    /// The `[metrics]` rules, shared with `/metrics` and the outputs.
    pub exporter: Arc<Exporter>,
}

impl Gatherer {
    pub fn new(
        config_path: &Path,
        config: Config,
        config_text: &str,
        target: Target,
        exporter: Arc<Exporter>,
        stop: Arc<Stop>,
    ) -> Gatherer {
        let outputs = outputs::start_all(
            &config.outputs,
            &Started {
                exporter: Arc::clone(&exporter),
                config_path: config_path.to_path_buf(),
            },
        );
        // One spelling for every plugin file, whether it came from a directory listing or
        // a file event (which reports absolute paths).
        let plugins_dir = config.plugins_dir(config_path);
        let plugins_dir = plugins_dir.canonicalize().unwrap_or(plugins_dir);
        Gatherer {
            config_path: config_path.to_path_buf(),
            plugins_dir,
            ctx: Context {
                sink: Sink::new(target, outputs),
                vars: Arc::new(parking_lot::RwLock::new(config.vars_as_text(config_path))),
                limits: config.host.limits(),
                sockets: Arc::default(),
            },
            scheduler: Scheduler::start(config.host.workers),
            state: Mutex::new(State::new(config, config_text)),
            published: RwLock::default(),
            stop,
            paused: Mutex::default(),
            exporter,
        }
    }

    /// Starts the `[[output]]`s the diff adds or changes and stops those it removes or
    /// changes; the others run on untouched. Samples go to the new set from the swap on;
    /// the stopped ones send what they hold on a thread of their own.
    pub fn change_outputs(&self, d: &ConfigDiff<'_>) {
        let starting: Vec<&(String, &OutputConfig)> = d
            .outputs_to_add
            .iter()
            .chain(&d.outputs_to_change)
            .collect();
        if starting.is_empty() && d.outputs_to_remove.is_empty() {
            return;
        }
        let going = |name: &str| {
            d.outputs_to_remove.iter().any(|n| n == name)
                || d.outputs_to_change.iter().any(|(n, _)| n == name)
        };
        let current = self.ctx.sink.outputs();
        let (retired, mut kept): (Vec<_>, Vec<_>) =
            current.iter().cloned().partition(|o| going(o.name()));
        let started = Started {
            exporter: Arc::clone(&self.exporter),
            config_path: self.config_path.clone(),
        };
        kept.extend(
            starting
                .iter()
                .map(|(name, config)| config.settings().start(name.clone(), &started)),
        );
        self.ctx.sink.outputs.store(Arc::new(kept));
        tracing::info!(
            "outputs: {} started, {} replaced, {} stopped",
            d.outputs_to_add.len(),
            d.outputs_to_change.len(),
            d.outputs_to_remove.len()
        );
        if !retired.is_empty() {
            let _ = std::thread::Builder::new()
                .name("output-finish".into())
                .spawn(move || {
                    for output in retired {
                        output.finish(Duration::from_secs(5));
                    }
                });
        }
    }

    /// Points the remote sink at the server `config` names (address, credentials,
    /// buffer); what it holds for the old one goes to the new one.
    pub fn retarget(&self, config: &Config) {
        let Target::Remote(pusher) = &self.ctx.sink.target else {
            return;
        };
        match config.server.endpoint(&self.config_path) {
            Some(Ok(endpoint)) => {
                let backlog = config
                    .server
                    .waiting(&self.config_path)
                    .open("[server] remote", Some(&pusher.backlog()));
                pusher.retarget(endpoint, backlog)
            }
            Some(Err(e)) => tracing::error!(
                "[server] remote: {e}; samples keep going to {}",
                pusher.endpoint()
            ),
            None => {}
        }
    }

    /// The state, for changing it; what is published for the views is brought up to date
    /// when the guard goes.
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard {
            guard: self.state.lock(),
            published: &self.published,
        }
    }

    /// The state as of its last change, for the views: never waits for a reload.
    pub fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published.read())
    }

    /// Stores one of the host's own figures.
    pub fn report(&self, key: &str, value: impl std::fmt::Display) {
        self.ctx.sink.report(key, value);
    }

    /// Starts `spec`, or replaces the running job of that name. A new job is made (and its
    /// options accepted) before the old one stops; if it cannot be made, the old one keeps
    /// running and the error is reported. Returns whether the new job runs.
    pub fn start(&self, state: &mut State, spec: &JobSpec) -> bool {
        let made = self
            .plugin(state, &spec.plugin)
            .and_then(|plugin| Job::create(spec.clone(), plugin, &self.ctx));
        self.install(spec, made)
    }

    /// The plugin that declares `name`: loaded already, or loaded now from the file that
    /// declares it, which nothing had named before.
    pub fn plugin(&self, state: &mut State, name: &str) -> Result<Arc<Plugin>, Failure> {
        if let Some(plugin) = state.plugins.get(name) {
            return Ok(Arc::clone(plugin));
        }
        let Some(file) = state.file_declaring(name) else {
            return Err(Failure::error(format!(
                "no plugin declares the name {name:?} (loaded: {})",
                state.plugin_names()
            )));
        };
        let plugin = loader::load(&file, state.config.probe(), &state.config.host.trust)
            .map_err(|e| Failure::error(format!("plugin {name}: {e}")))?;
        if plugin.name != name {
            return Err(Failure::error(format!(
                "plugin {name}: {} now declares {:?}",
                file.display(),
                plugin.name
            )));
        }
        let plugin = Arc::new(plugin);
        self.loaded(state, &plugin);
        tracing::info!(
            "loaded plugin {name} {} ({}) from {} in {:?} (generation {}), now that a job names it",
            plugin.version,
            plugin.description,
            file.display(),
            plugin.load_time,
            plugin.generation
        );
        Ok(plugin)
    }

    /// Records a plugin just loaded, by name and by file, and in its figures. Returns the
    /// generation it replaces, if any.
    pub fn loaded(&self, state: &mut State, plugin: &Arc<Plugin>) -> Option<Arc<Plugin>> {
        let name = plugin.name.clone();
        state.failed_files.remove(&plugin.file);
        state.files.insert(
            plugin.file.clone(),
            KnownFile {
                hash: plugin.hash,
                name: name.clone(),
            },
        );
        let key = |what: &str| format!("host.plugin.{name}.{what}");
        self.report(&key("status"), "loaded");
        self.report(&key("version"), &plugin.version);
        self.report(&key("generation"), plugin.generation);
        self.report(
            &key("load_ms"),
            format_args!("{:.3}", plugin.load_time.as_secs_f64() * 1000.0),
        );
        if let Signed::By { key: by, .. } = &plugin.signed {
            self.report(&key("signed_by"), by);
            self.report(
                &key("signature_check_ms"),
                format_args!("{:.3}", plugin.check_time.as_secs_f64() * 1000.0),
            );
        }
        state.plugins.insert(name, Arc::clone(plugin))
    }

    /// Puts a newly made job in place of the running one; or, if it could not be made,
    /// reports why and leaves the running one alone.
    pub fn install(&self, spec: &JobSpec, made: Result<Arc<Job>, Failure>) -> bool {
        let name = &spec.name;
        match made {
            Ok(job) => {
                if self.paused.lock().contains(name) {
                    job.paused.store(true, Ordering::Relaxed);
                }
                self.scheduler.add(job);
                true
            }
            Err(failure) => {
                let e = failure.for_job(name);
                if self.scheduler.get(name).is_some() {
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
        // A spec that could not start is not tried again (nor said again) until it changes:
        // a helper asks for its jobs every round.
        let refused_before = state.refused.get(&spec.name) == Some(&spec);
        if changed || (!running && !refused_before) {
            if self.start(state, &spec) {
                state.refused.remove(&spec.name);
            } else {
                state.refused.insert(spec.name.clone(), spec);
            }
        }
    }

    /// Pauses or resumes a job by hand.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), String> {
        let job = self
            .scheduler
            .get(name)
            .ok_or_else(|| format!("no running job is called {name}"))?;
        job.paused.store(paused, Ordering::Relaxed);
        let mut set = self.paused.lock();
        if paused {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
        self.report(&format!("host.job.{name}.state"), job.state_name());
        if !paused && job.style == spud_plugin_api::ffi::JobStyle::Pull {
            // A resumed job collects at once, like a started one; if it is collecting
            // already, that collect is as good.
            let _ = self.scheduler.run_now(name);
        }
        Ok(())
    }

    /// Stops helpers and jobs, then lets the remote server and the outputs take what is
    /// left (a few seconds at most).
    pub fn shut_down(&self) {
        for stop in self.state().helpers.values() {
            stop.stop();
        }
        self.scheduler.stop(Duration::from_secs(2));
        if let Target::Remote(remote) = &self.ctx.sink.target {
            remote.flush_and_stop(Duration::from_secs(5));
        }
        for output in self.ctx.sink.outputs().iter() {
            output.finish(Duration::from_secs(5));
        }
    }
}

/// The state, locked; publishes a copy for the views when dropped.
pub struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    published: &'a RwLock<Arc<Published>>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        *self.published.write() = Arc::new(Published::of(&self.guard));
    }
}
