//! What the gatherer knows, as plain data: the config in force, the plugins loaded (by name
//! and by file), the jobs that should run and who wants them, and the running helpers.
//! Startup and every reload change it under one lock (`Gatherer::state`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::gatherer::stop::Stop;
use crate::loading::loader::Plugin;
use crate::model::JobSpec;

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
    /// Running helpers by name, with what stops each one's thread.
    pub helpers: HashMap<String, Arc<Stop>>,
}

impl State {
    /// The state before anything is loaded.
    pub fn new(config: Config, config_text: &str) -> State {
        State {
            config,
            config_hash: content_hash(config_text.as_bytes()),
            plugins: HashMap::new(),
            files: HashMap::new(),
            failed_files: HashMap::new(),
            wanted: BTreeMap::new(),
            helpers: HashMap::new(),
        }
    }

    /// The names of the loaded plugins, sorted, for messages.
    pub fn plugin_names(&self) -> String {
        let mut names: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
        names.sort();
        names.join(", ")
    }

    /// The names of the jobs `owner` wants.
    pub fn jobs_of(&self, owner: &Owner) -> Vec<String> {
        self.wanted
            .iter()
            .filter(|(_, w)| w.owner == *owner)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// What the views show of the state, copied out each time the state changes: a view never
/// waits for a reload that holds the state (starting a worker can take seconds).
#[derive(Default)]
pub struct Published {
    pub wanted: Vec<Wanted>,
    pub plugins: Vec<PluginSummary>,
}

/// A loaded plugin, as the views show it.
pub struct PluginSummary {
    pub name: String,
    pub version: String,
    pub generation: u64,
    pub file: PathBuf,
    pub is_helper: bool,
}

impl Published {
    pub fn of(state: &State) -> Published {
        let mut plugins: Vec<PluginSummary> = state
            .plugins
            .values()
            .map(|p| PluginSummary {
                name: p.name.clone(),
                version: p.version.clone(),
                generation: p.generation,
                file: p.file.clone(),
                is_helper: p.is_helper,
            })
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        Published {
            wanted: state.wanted.values().cloned().collect(),
            plugins,
        }
    }

    pub fn has_plugin(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p.name == name)
    }
}

/// A file's or a config's content, to tell whether it changed.
pub fn content_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}
