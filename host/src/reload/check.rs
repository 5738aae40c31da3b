//! `spud-host check-config`: every problem with a config, one line each. Loads every plugin
//! and asks each job's plugin to accept its options, as a start would, and says whose
//! signature let each plugin load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::gatherer::helpers;
use crate::jobs::job::Job;
use crate::jobs::job_host::Context;
use crate::loading::loader::Plugin;
use crate::loading::plugins;
use crate::sinks::{Sink, Target};

/// What `check-config` found.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per problem.
    pub problems: Vec<String>,
    /// One line per plugin loaded: its file and its signature's status.
    pub signatures: Vec<String>,
}

pub fn check(config_path: &Path) -> Report {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                problems: e.problems,
                ..Report::default()
            }
        }
    };
    let (plugins, problems) = plugins::load_dir(
        &config.plugins_dir(config_path),
        config.probe(),
        &config.host.trust,
    );
    let mut signatures: Vec<String> = plugins
        .values()
        .map(|p| format!("signature: {} ({}): {}", p.file.display(), p.name, p.signed))
        .collect();
    signatures.sort();
    Report {
        problems: jobs_and_rules(config_path, &config, &plugins, problems),
        signatures,
    }
}

fn jobs_and_rules(
    config_path: &Path,
    config: &Config,
    plugins: &HashMap<String, Arc<Plugin>>,
    mut problems: Vec<String>,
) -> Vec<String> {
    let ctx = Context {
        sink: Sink::new(
            Target::Embedded(spud_server::Server::new(spud_server::Config::default())),
            Vec::new(),
        ),
        vars: Arc::new(parking_lot::RwLock::new(config.vars_as_text(config_path))),
        limits: config.host.limits(),
        sockets: Arc::default(),
    };
    for spec in config.job_specs() {
        match plugins.get(&spec.plugin) {
            None => problems.push(format!(
                "job {}: no plugin declares the name {:?}",
                spec.name, spec.plugin
            )),
            Some(plugin) => {
                let name = spec.name.clone();
                if let Err(failure) = Job::create(spec, Arc::clone(plugin), &ctx) {
                    problems.push(failure.for_job(&name));
                }
            }
        }
    }
    if let Some(rules) = &config.server.embedded.rules {
        let path = crate::config::relative_to(config_path, rules);
        if let Err(e) = spud_server::alerts::rules::RuleSet::load(&path) {
            problems.extend(e.problems);
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
            // Asked once, as the running host would: its options, and each job it returns.
            Some(p) => {
                let (interval, timeout) = (config.host.interval, config.host.timeout);
                let name = helper.called();
                match helpers::wanted_by(p, helper, &ctx, interval, timeout) {
                    Err(e) => problems.push(format!("helper {name}: {e}")),
                    Ok(defs) => {
                        for def in defs {
                            let spec = match helpers::spec_of(&def, interval, timeout, config) {
                                Ok(spec) => spec,
                                Err(e) => {
                                    problems.push(format!("helper {name}: {e}"));
                                    continue;
                                }
                            };
                            let job = spec.name.clone();
                            match plugins.get(&spec.plugin) {
                                None => problems.push(format!(
                                    "helper {name}: job {job}: no plugin declares the name {:?}",
                                    spec.plugin
                                )),
                                Some(plugin) => {
                                    if let Err(failure) =
                                        Job::create(spec, Arc::clone(plugin), &ctx)
                                    {
                                        problems.push(format!(
                                            "helper {name}: {}",
                                            failure.for_job(&job)
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    problems
}
