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
use crate::jobs::job_host::{Context, JobHost};
use crate::loading::loader::Plugin;
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
            // What went wrong last round: a failure is said once, until it changes or ends.
            // Unknown at first (empty), so that a first good round clears what an earlier
            // generation of this helper reported.
            let mut failing: Option<String> = Some(String::new());
            // Until the reload stops this helper or the host stops.
            loop {
                let failure = round(&gatherer, &helper, interval, timeout, &stop);
                said(&gatherer, &helper, &failing, &failure);
                failing = failure;
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

/// The spec of a job a helper returned: its options parsed, its interval (0: the host's),
/// the host's timeout.
pub fn spec_of(
    def: &spud_plugin_api::ffi::JobDef,
    default_interval: Duration,
    timeout: Duration,
    config: &crate::config::Config,
) -> Result<JobSpec, String> {
    let options: toml::Table = toml::from_str(def.options.as_str())
        .map_err(|e| format!("job {}: bad options: {}", def.name, e.message()))?;
    Ok(JobSpec {
        name: def.name.to_string(),
        plugin: def.plugin.to_string(),
        interval: match def.interval_ms {
            0 => default_interval,
            ms => Duration::from_millis(ms),
        },
        timeout,
        options,
        isolation: config.isolation(None, &def.plugin),
    })
}

/// Logs and reports a round's failure when it differs from the last one, and the
/// recovery when one ends (`host.helper.<name>.last_error` is then cleared).
fn said(gatherer: &Gatherer, helper: &HelperConfig, before: &Option<String>, now: &Option<String>) {
    let name = helper.called();
    if before == now {
        return;
    }
    match now {
        Some(failure) => {
            tracing::error!("helper {name}: {failure}");
            gatherer.report(&format!("host.helper.{name}.last_error"), failure);
        }
        None => {
            if before.as_ref().is_some_and(|b| !b.is_empty()) {
                tracing::info!("helper {name}: answering again");
            }
            gatherer.report(&format!("host.helper.{name}.last_error"), "");
        }
    }
}

/// One round: ask, then start and stop jobs to match the answer. Why it could not ask, if so.
fn round(
    gatherer: &Gatherer,
    helper: &HelperConfig,
    default_interval: Duration,
    timeout: Duration,
    stop: &Stop,
) -> Option<String> {
    let name = helper.called();
    let wanted = match ask(gatherer, helper, default_interval, timeout) {
        Ok(wanted) => wanted,
        Err(failure) => return Some(failure),
    };
    let mut state = gatherer.state();
    // A helper stopped (by a reload) while it was asking: its answer no longer counts.
    if stop.is_stopped() {
        return None;
    }
    let owner = Owner::Helper(name.to_string());
    let mut keep = Vec::new();
    for def in wanted {
        let spec = match spec_of(&def, default_interval, timeout, &state.config) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!("helper {name}: {e}");
                continue;
            }
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
    None
}

/// The jobs the helper's plugin wants now, or why it could not answer.
fn ask(
    gatherer: &Gatherer,
    helper: &HelperConfig,
    default_interval: Duration,
    timeout: Duration,
) -> Result<Vec<spud_plugin_api::ffi::JobDef>, String> {
    let plugin = {
        let mut state = gatherer.state();
        gatherer.plugin(&mut state, &helper.plugin)
    };
    let plugin = plugin.map_err(|failure| failure.to_string())?;
    wanted_by(&plugin, helper, &gatherer.ctx, default_interval, timeout)
}

/// Asks a helper's plugin which jobs it wants, as a round does (and `check-config`, once).
pub fn wanted_by(
    plugin: &Plugin,
    helper: &HelperConfig,
    ctx: &Context,
    default_interval: Duration,
    timeout: Duration,
) -> Result<Vec<spud_plugin_api::ffi::JobDef>, String> {
    let name = helper.called();
    let spec = spud_plugin_api::ffi::JobSpec {
        name: name.into(),
        options: toml::to_string(&helper.options).unwrap_or_default().into(),
        interval_ms: helper.interval.unwrap_or(default_interval).as_millis() as u64,
        timeout_ms: timeout.as_millis() as u64,
    };
    let host = Arc::new(JobHost::new(name, &plugin.name, ctx.clone()));
    let answer = plugin
        .module()
        .map_err(Failure::error)
        .and_then(|module| module.helper_jobs(spec, plugin_host::handle(name, Arc::clone(&host))));
    answer
        .map(|jobs| jobs.into_iter().collect())
        .map_err(|failure| failure.to_string())
}
