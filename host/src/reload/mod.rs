//! Reloading: a plugin file or the config changed; restart only what that touches.
//!
//! A plugin file is taken once it has settled (size, modification time and inode unchanged
//! for `SETTLE`), and only if its content changed (same hash: nothing happens). The new
//! generation loads completely (ELF check, ABI check, a new job made for every job of that
//! plugin, which means its options were accepted) before any job of the old one stops; then
//! those jobs are swapped one by one. A job the new version refuses keeps its old version. If
//! the file does not load, the old generation keeps running and the failure is one log line
//! plus `host.plugin.<name>.status` and `.last_error`.
//!
//! A config change is one diff of the whole file (`diff.rs`): removed jobs stop, new ones
//! start, changed ones are replaced, and everything else keeps its schedule; helpers, `[vars]`,
//! `[metrics]`, `[[output]]`s and the remote server change live, each restarting only what it
//! touches. A field only a restart applies (a listener, a file the server opened) is named in
//! one line and kept as it runs; the rest of the edit is applied. A config that does not
//! parse changes nothing. Jobs started by helpers survive unless their helper changed.

pub mod check;
pub mod control;
pub mod watch;

use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::diff::{config_diff, running};
use crate::gatherer::helpers;
use crate::gatherer::state::{content_hash, KnownFile, Owner, State, Wanted};
use crate::gatherer::Gatherer;
use crate::jobs::job::{Job, Runner};
use crate::loading::loader::{self, Plugin};
use crate::model::JobSpec;
use crate::reload::watch::Change;

/// How long a plugin file must stay the same before it is read.
const SETTLE: Duration = Duration::from_millis(20);
/// A file still changing after this is looked at again on its next event.
const SETTLE_GIVE_UP: Duration = Duration::from_secs(10);

/// Startup: every plugin file, then every job of the config, then the helpers.
pub fn startup(gatherer: &Arc<Gatherer>) {
    let mut state = gatherer.state();
    for spec in state.config.job_specs() {
        state.wanted.insert(
            spec.name.clone(),
            Wanted {
                spec,
                owner: Owner::Config,
            },
        );
    }
    match loader::plugin_files(&gatherer.plugins_dir) {
        Ok(files) => {
            for file in files {
                load_file(gatherer, &mut state, &file, true);
            }
        }
        Err(e) => tracing::error!("{e}"),
    }
    // Jobs whose plugin is not there say so now (and start when it arrives).
    let waiting: Vec<JobSpec> = state
        .wanted
        .values()
        .filter(|w| gatherer.scheduler.get(&w.spec.name).is_none())
        .map(|w| w.spec.clone())
        .collect();
    for spec in waiting {
        gatherer.start(&mut state, &spec);
    }
    for helper in state.config.helpers.clone() {
        helpers::start(gatherer, &mut state, helper);
    }
    gatherer.report("host.config.status", "loaded");
}

/// Applies changes as they come, one at a time.
pub fn run(gatherer: &Arc<Gatherer>, changes: &Receiver<Change>) {
    while let Ok(first) = changes.recv() {
        // One edit often raises several events; take them together.
        let mut batch = vec![first];
        while let Ok(more) = changes.recv_timeout(Duration::from_millis(5)) {
            batch.push(more);
        }
        let everything = batch.contains(&Change::Everything);
        if everything || batch.contains(&Change::Config) {
            reload_config(gatherer);
        }
        let mut paths: Vec<PathBuf> = batch
            .iter()
            .filter_map(|c| match c {
                Change::PluginFile(p) => Some(gatherer.plugins_dir.join(p.file_name()?)),
                _ => None,
            })
            .collect();
        if everything {
            paths.extend(moved_files(gatherer));
        }
        paths.sort();
        paths.dedup();
        for path in paths {
            if settle(&path) {
                let mut state = gatherer.state();
                load_file(gatherer, &mut state, &path, false);
            }
        }
    }
}

/// The plugin files, listed or known, whose stamp is not the one they had when last read:
/// new, changed or gone. The others are not read again.
fn moved_files(gatherer: &Gatherer) -> Vec<PathBuf> {
    let mut candidates = match loader::plugin_files(&gatherer.plugins_dir) {
        Ok(files) => files,
        Err(e) => {
            tracing::error!("{e}");
            Vec::new()
        }
    };
    let state = gatherer.state();
    candidates.extend(state.files.keys().cloned());
    candidates.retain(|path| state.stamps.get(path) != loader::Stamp::read(path).as_ref());
    candidates
}

/// Waits until the file's stamp (size, inode, times) stays the same for `SETTLE`.
/// True once settled, or once it is gone (a removal is a change too).
fn settle(path: &Path) -> bool {
    let started = Instant::now();
    let mut before = loader::Stamp::read(path);
    loop {
        std::thread::sleep(SETTLE);
        let now = loader::Stamp::read(path);
        if now == before {
            return true;
        }
        if started.elapsed() > SETTLE_GIVE_UP {
            tracing::warn!(
                "{} is still changing after {SETTLE_GIVE_UP:?}; waiting for its next change",
                path.display()
            );
            return false;
        }
        before = now;
    }
}

/// Loads (or reloads) the plugin at `path`, or notices it is gone. A plugin that declares
/// its name in its file and that no job or helper names is not loaded: its name is noted,
/// and it is loaded when something names it (`Gatherer::plugin`).
fn load_file(gatherer: &Gatherer, state: &mut State, path: &Path, starting: bool) {
    let opened = match loader::open(path) {
        Ok(opened) => opened,
        Err(loader::ReadError::Missing) => return removed(gatherer, state, path),
        Err(loader::ReadError::Refused(reason)) => {
            // Said once per reason; the running version (if any) stays.
            if state
                .failed_files
                .insert(path.to_path_buf(), content_hash(reason.as_bytes()))
                != Some(content_hash(reason.as_bytes()))
            {
                tracing::error!("{reason}");
            }
            return;
        }
    };
    let content = opened.hash;
    state.stamps.insert(path.to_path_buf(), opened.stamp);
    if state.files.get(path).is_some_and(|f| f.hash == content) {
        tracing::debug!("{}: content unchanged", path.display());
        return;
    }
    if state.failed_files.get(path) == Some(&opened.hash_with_signature()) {
        return; // Already said why this content (and signature) does not load.
    }
    let known = state.files.get(path).map(|f| f.name.clone());
    // A new version of a running plugin is loaded whatever it declares: it goes through
    // every check, and a failure is the running plugin's.
    let running = known
        .as_ref()
        .is_some_and(|name| state.plugins.contains_key(name));
    if let Some(name) = opened
        .declared
        .clone()
        .filter(|name| !running && !state.plugins.contains_key(name) && !state.needs(name))
    {
        return note_unused(gatherer, state, path, name, content, known);
    }
    let refused_as = opened.hash_with_signature();
    let plugin = match loader::load_opened(opened, state.config.probe(), &state.config.host.trust) {
        Ok(plugin) => plugin,
        Err(e) => {
            state.failed_files.insert(path.to_path_buf(), refused_as);
            match &known {
                Some(name) => {
                    tracing::error!(
                        "plugin {name}: {} not loaded, the running version stays: {}",
                        path.display(),
                        e.reason
                    );
                    gatherer.report(&format!("host.plugin.{name}.status"), "reload_failed");
                    gatherer.report(&format!("host.plugin.{name}.last_error"), &e.reason);
                }
                None => tracing::error!("plugin {} not loaded: {}", path.display(), e.reason),
            }
            return;
        }
    };
    if !declared_once(state, path, &plugin.name) {
        return;
    }
    if let Some(old) = known.filter(|old| *old != plugin.name) {
        renamed(gatherer, state, path, &old, &plugin.name);
    }
    install(gatherer, state, plugin, path, starting);
}

/// Whether no other file declares `name`; if one does, it keeps the name and this says so.
fn declared_once(state: &State, path: &Path, name: &str) -> bool {
    match state.file_declaring(name).filter(|other| other != path) {
        Some(other) => {
            tracing::error!(
                "{} and {} both declare the plugin {name:?}; keeping {}",
                other.display(),
                path.display(),
                other.display()
            );
            false
        }
        None => true,
    }
}

/// The file at `path` declared `old` and now declares `new`: `old`'s jobs stop.
fn renamed(gatherer: &Gatherer, state: &mut State, path: &Path, old: &str, new: &str) {
    tracing::info!("{} now declares {new:?} instead of {old:?}", path.display());
    plugin_gone(gatherer, state, old);
}

/// A plugin nothing names: its file and name are noted, nothing of it is loaded.
fn note_unused(
    gatherer: &Gatherer,
    state: &mut State,
    path: &Path,
    name: String,
    content: u64,
    known: Option<String>,
) {
    state.failed_files.remove(path);
    if !declared_once(state, path, &name) {
        return;
    }
    if let Some(old) = known.filter(|old| *old != name) {
        renamed(gatherer, state, path, &old, &name);
    }
    tracing::info!(
        "found plugin {name} in {}; it loads when a job or a helper names it",
        path.display()
    );
    gatherer.report(&format!("host.plugin.{name}.status"), "unused");
    state.files.insert(
        path.to_path_buf(),
        KnownFile {
            hash: content,
            name,
        },
    );
}

/// Makes the new generation's jobs first, then swaps them in.
fn install(gatherer: &Gatherer, state: &mut State, plugin: Plugin, path: &Path, starting: bool) {
    let plugin = Arc::new(plugin);
    let name = plugin.name.clone();
    let previous = gatherer.loaded(state, &plugin);

    let specs: Vec<JobSpec> = state
        .wanted
        .values()
        .filter(|w| w.spec.plugin == name)
        .map(|w| w.spec.clone())
        .collect();
    let made: Vec<(JobSpec, Result<Arc<Job>, crate::model::Failure>)> = specs
        .into_iter()
        .map(|spec| {
            let job = Job::create(spec.clone(), Arc::clone(&plugin), &gatherer.ctx);
            (spec, job)
        })
        .collect();
    let (mut swapped, mut kept) = (0, 0);
    for (spec, job) in made {
        if gatherer.install(&spec, job) {
            state.refused.remove(&spec.name);
            swapped += 1;
        } else {
            kept += 1;
        }
    }
    let verb = if previous.is_some() {
        "reloaded"
    } else {
        "loaded"
    };
    if !starting || previous.is_some() {
        tracing::info!(
            "plugin {name} {verb}: {} {} (generation {}, {:?}); {swapped} jobs on it{}",
            path.display(),
            plugin.version,
            plugin.generation,
            plugin.load_time,
            if kept > 0 {
                format!(", {kept} refused it and keep their previous state")
            } else {
                String::new()
            }
        );
    } else {
        tracing::info!(
            "loaded plugin {name} {} ({}) from {} in {:?} (generation {})",
            plugin.version,
            plugin.description,
            path.display(),
            plugin.load_time,
            plugin.generation
        );
    }
}

/// The file is gone: its jobs stop until it is back.
fn removed(gatherer: &Gatherer, state: &mut State, path: &Path) {
    state.failed_files.remove(path);
    state.stamps.remove(path);
    let Some(file) = state.files.remove(path) else {
        return;
    };
    tracing::warn!(
        "plugin file {} was removed: the jobs of plugin {} stop until it is back",
        path.display(),
        file.name
    );
    plugin_gone(gatherer, state, &file.name);
}

fn plugin_gone(gatherer: &Gatherer, state: &mut State, name: &str) {
    state.plugins.remove(name);
    gatherer.report(&format!("host.plugin.{name}.status"), "missing");
    let theirs: Vec<String> = state
        .wanted
        .values()
        .filter(|w| w.spec.plugin == name)
        .map(|w| w.spec.name.clone())
        .collect();
    for job in theirs {
        if gatherer.scheduler.remove(&job).is_some() {
            gatherer.report(&format!("host.job.{job}.state"), "waiting_for_plugin");
        }
    }
}

/// Re-reads the config and applies the difference.
pub fn reload_config(gatherer: &Arc<Gatherer>) {
    let path = &gatherer.config_path;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{}: {e}; everything keeps running as it is", path.display());
            gatherer.report("host.config.status", "failed");
            gatherer.report(
                "host.config.last_error",
                format_args!("{}: {e}", path.display()),
            );
            return;
        }
    };
    let mut state = gatherer.state();
    let content = content_hash(text.as_bytes());
    if content == state.config_hash {
        return;
    }
    let new = match Config::parse(&text, path) {
        Ok(c) => c,
        Err(e) => {
            for problem in &e.problems {
                tracing::error!("{problem}");
            }
            tracing::error!("the config was not reloaded; everything keeps running as it was");
            state.config_hash = content;
            gatherer.report("host.config.status", "failed");
            gatherer.report("host.config.last_error", e.problems.join("; "));
            return;
        }
    };
    state.config_hash = content;
    let old = state.config.clone();
    let (before, after) = (old.job_specs(), new.job_specs());
    let d = config_diff(&old, &new, &before, &after);
    for field in &d.need_restart {
        tracing::warn!(
            "{}: {field} changed: it takes effect when spud-host restarts; the rest of the edit is applied",
            path.display()
        );
    }
    state.config = running(&old, &new);

    if d.vars {
        *gatherer.ctx.vars.write() = new.vars_as_text(&gatherer.config_path);
        // Isolated jobs keep their own copy.
        for job in gatherer.scheduler.jobs() {
            if let Runner::Process(isolated) = &job.runner {
                isolated.vars_changed();
            }
        }
    }
    if d.metrics {
        // Checked when the config was parsed.
        if let Ok(rules) = spud_server::faces::metrics::Rules::new(&new.metrics_rules()) {
            gatherer.exporter.set_rules(rules);
            tracing::info!("[metrics] rules replaced");
        }
    }
    if d.remote {
        gatherer.retarget(&new);
    }
    gatherer.change_outputs(&d);
    for name in &d.jobs.to_remove {
        gatherer.forget(&mut state, name);
    }
    for spec in d.jobs.to_add.iter().chain(&d.jobs.to_change) {
        gatherer.want(&mut state, (*spec).clone(), Owner::Config);
    }
    for helper in &d.helpers_to_remove {
        helpers::stop(gatherer, &mut state, helper.called());
        if d.helpers_to_add
            .iter()
            .any(|h| h.called() == helper.called())
        {
            tracing::info!(
                "helper {} changed (its options, plugin or interval): restarted, its jobs with it",
                helper.called()
            );
        }
    }
    for helper in &d.helpers_to_add {
        helpers::start(gatherer, &mut state, (*helper).clone());
    }
    if d.is_live_empty() {
        tracing::info!("config reloaded: nothing that runs changed");
    } else {
        tracing::info!(
            "config reloaded: {} jobs added, {} changed, {} removed; {} helpers started, {} stopped{}{}{}",
            d.jobs.to_add.len(),
            d.jobs.to_change.len(),
            d.jobs.to_remove.len(),
            d.helpers_to_add.len(),
            d.helpers_to_remove.len(),
            if d.vars { "; [vars] changed" } else { "" },
            if d.metrics { "; [metrics] changed" } else { "" },
            if d.remote { "; the remote server changed" } else { "" },
        );
    }
    gatherer.report("host.config.status", "loaded");
}
