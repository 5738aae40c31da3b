//! How the gatherer shows itself to people: the `jobs` lines of the line protocol and the
//! jobs and plugins of the HTTP API. Helpers show beside the jobs, and a helper's jobs say
//! which helper made them.

use std::sync::atomic::Ordering::Relaxed;

use crate::gatherer::state::{Owner, Published, Wanted};
use crate::gatherer::Gatherer;
use crate::sinks::Target;

/// What a wanted job is doing, running or not.
struct JobView {
    state: &'static str,
    generation: u64,
    errors: u64,
    timeouts: u64,
    worker_pid: Option<u32>,
}

fn view(gatherer: &Gatherer, state: &Published, wanted: &Wanted) -> JobView {
    match gatherer.scheduler.get(&wanted.spec.name) {
        Some(job) => JobView {
            state: job.state_name(),
            generation: job.plugin.generation,
            errors: job.errors.load(Relaxed),
            timeouts: job.timeouts.load(Relaxed),
            worker_pid: job.runner.worker_pid(),
        },
        None => JobView {
            state: if state.has_plugin(&wanted.spec.plugin) {
                "failed"
            } else {
                "waiting"
            },
            generation: 0,
            errors: 0,
            timeouts: 0,
            worker_pid: None,
        },
    }
}

/// The `jobs` listing: one line per wanted job, running or not (a helper's job names its
/// helper), then one per helper.
pub fn job_lines(gatherer: &Gatherer) -> Vec<String> {
    let state = gatherer.published();
    let mut lines: Vec<String> = state
        .wanted
        .iter()
        .map(|w| {
            let v = view(gatherer, &state, w);
            let from = match &w.owner {
                Owner::Helper(helper) => format!(" helper={helper}"),
                Owner::Config => String::new(),
            };
            format!(
                "{} {} plugin={} generation={} every={} errors={} timeouts={}{from}",
                w.spec.name,
                v.state,
                w.spec.plugin,
                v.generation,
                humantime::format_duration(w.spec.interval),
                v.errors,
                v.timeouts,
            )
        })
        .collect();
    for (name, plugin, every, jobs) in helpers(&state) {
        lines.push(format!(
            "{name} helper plugin={plugin} every={every} jobs={jobs}"
        ));
    }
    lines
}

/// Each configured helper: name, plugin, interval, how many jobs it wants now.
fn helpers(state: &Published) -> Vec<(String, String, String, usize)> {
    state
        .helpers
        .iter()
        .map(|(name, plugin, every)| {
            let jobs = state
                .wanted
                .iter()
                .filter(|w| w.owner == Owner::Helper(name.clone()))
                .count();
            let every = humantime::format_duration(*every).to_string();
            (name.clone(), plugin.clone(), every, jobs)
        })
        .collect()
}

/// The jobs for the HTTP API: what `jobs` says, with the last error from the store.
pub fn jobs(gatherer: &Gatherer) -> serde_json::Value {
    let state = gatherer.published();
    let last_error = |name: &str| -> Option<String> {
        let Target::Embedded(server) = &gatherer.ctx.sink.target else {
            return None;
        };
        let history = server.get(&format!("host.{name}.last_error"))?;
        Some(history.first()?.value.to_string_lossy())
    };
    let jobs: Vec<serde_json::Value> = state
        .wanted
        .iter()
        .map(|w| {
            let name = &w.spec.name;
            let v = view(gatherer, &state, w);
            let mut json = serde_json::json!({
                "name": name,
                "plugin": w.spec.plugin,
                "every": humantime::format_duration(w.spec.interval).to_string(),
                "state": v.state,
                "generation": v.generation,
                "errors": v.errors,
                "timeouts": v.timeouts,
            });
            if let Some(pid) = v.worker_pid {
                json["worker_pid"] = pid.into();
            }
            if let Owner::Helper(helper) = &w.owner {
                json["helper"] = helper.clone().into();
            }
            if let Some(e) = last_error(&format!("job.{name}")) {
                json["last_error"] = e.into();
            }
            json
        })
        .collect();
    let mut jobs = jobs;
    for (name, plugin, every, count) in helpers(&state) {
        let mut json = serde_json::json!({
            "name": name,
            "plugin": plugin,
            "every": every,
            "state": "helper",
            "generation": 0,
            "errors": 0,
            "timeouts": 0,
            "jobs": count,
        });
        if let Some(e) = last_error(&format!("helper.{name}")).filter(|e| !e.is_empty()) {
            json["last_error"] = e.into();
        }
        jobs.push(json);
    }
    jobs.into()
}

/// The plugins for the HTTP API: those loaded, then those found that nothing names.
pub fn plugins(gatherer: &Gatherer) -> serde_json::Value {
    let published = gatherer.published();
    let loaded = published.plugins.iter().map(|p| {
        serde_json::json!({
            "name": p.name,
            "loaded": true,
            "version": p.version,
            "generation": p.generation,
            "file": p.file.display().to_string(),
            "helper": p.is_helper,
        })
    });
    let unused = published.unused.iter().map(|(name, file)| {
        serde_json::json!({
            "name": name,
            "loaded": false,
            "file": file.display().to_string(),
        })
    });
    loaded.chain(unused).collect::<Vec<_>>().into()
}
