//! Helpers: plugins that decide which jobs exist (discovery). Each runs on a thread of its
//! own; every round asks its plugin for the jobs it wants now, starts the new ones, stops
//! those no longer wanted and leaves the rest alone. A job of the config wins over a
//! helper's job of the same name.

use std::sync::Arc;
use std::time::Duration;

use crate::config::HelperConfig;
use crate::gatherer::state::{Owner, State};
use crate::gatherer::stop::Stop;
use crate::gatherer::Gatherer;
use crate::jobs::job_host::JobHost;
use crate::loading::plugin_host;
use crate::model::{Failure, JobSpec};

/// Starts a helper's thread.
pub fn start(gatherer: &Arc<Gatherer>, state: &mut State, helper: HelperConfig) {
    let name = helper.called().to_string();
    let stop = Stop::new();
    state.helpers.insert(name.clone(), Arc::clone(&stop));
    let gatherer = Arc::clone(gatherer);
    let (interval, timeout) = (state.config.host.interval, state.config.host.timeout);
    std::thread::Builder::new()
        .name(format!("helper-{name}"))
        .spawn(move || {
            let every = helper.interval.unwrap_or(interval);
            // Until the reload stops this helper or the host stops.
            loop {
                round(&gatherer, &helper, interval, timeout, &stop);
                if stop.wait_either(&gatherer.stop, every) {
                    break;
                }
            }
        })
        .expect("spawn a helper thread");
}

/// Stops a helper and every job it started.
pub fn stop(gatherer: &Gatherer, state: &mut State, name: &str) {
    if let Some(stop) = state.helpers.remove(name) {
        stop.stop();
    }
    for job in state.jobs_of(&Owner::Helper(name.to_string())) {
        gatherer.forget(state, &job);
    }
}

/// One round: ask, then start and stop jobs to match the answer.
fn round(
    gatherer: &Gatherer,
    helper: &HelperConfig,
    default_interval: Duration,
    timeout: Duration,
    stop: &Stop,
) {
    let name = helper.called();
    let Some(wanted) = ask(gatherer, helper, default_interval, timeout) else {
        return;
    };
    let mut state = gatherer.state();
    // A helper stopped (by a reload) while it was asking: its answer no longer counts.
    if stop.is_stopped() {
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
        gatherer.want(&mut state, spec, owner.clone());
    }
    for job in state.jobs_of(&owner) {
        if !keep.contains(&job) {
            tracing::info!("helper {name}: job {job} is no longer wanted; stopping it");
            gatherer.forget(&mut state, &job);
        }
    }
}

/// The jobs the helper's plugin wants now; None (and said why) if it could not answer.
fn ask(
    gatherer: &Gatherer,
    helper: &HelperConfig,
    default_interval: Duration,
    timeout: Duration,
) -> Option<Vec<spud_plugin_api::ffi::JobDef>> {
    let name = helper.called();
    let plugin = {
        let mut state = gatherer.state();
        gatherer.plugin(&mut state, &helper.plugin)
    };
    let plugin = match plugin {
        Ok(plugin) => plugin,
        Err(failure) => {
            tracing::warn!("helper {name}: {failure}");
            return None;
        }
    };
    let spec = spud_plugin_api::ffi::JobSpec {
        name: name.into(),
        options: toml::to_string(&helper.options).unwrap_or_default().into(),
        interval_ms: helper.interval.unwrap_or(default_interval).as_millis() as u64,
        timeout_ms: timeout.as_millis() as u64,
    };
    let host = Arc::new(JobHost::new(name, &plugin.name, gatherer.ctx.clone()));
    let answer = plugin
        .module()
        .map_err(Failure::error)
        .and_then(|module| module.helper_jobs(spec, plugin_host::handle(name, Arc::clone(&host))));
    match answer {
        Ok(jobs) => Some(jobs.into_iter().collect()),
        Err(failure) => {
            tracing::error!("helper {name}: {failure}");
            gatherer.report(&format!("host.helper.{name}.last_error"), &failure);
            None
        }
    }
}
