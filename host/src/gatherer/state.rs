//! What the gatherer knows, as plain data: the config in force, the plugins loaded (by name
//! and by file), the jobs that should run and who wants them, and the running helpers.
//! Startup and every reload change it under one lock (`Gatherer::state`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::gatherer::stop::Stop;
use crate::loading::loader::{Plugin, Stamp};
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

/// A plugin file as last read: loaded, or only its declared name noted while nothing
/// names it.
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub hash: u64,
    pub name: String,
}

/// What changes on reload.
pub struct State {
    pub config: Config,
    pub config_hash: u64,
    /// The plugins loaded, by name.
    pub plugins: HashMap<String, Arc<Plugin>>,
    /// Every plugin file read, by path; one whose name is not in `plugins` is unused.
    pub files: HashMap<PathBuf, KnownFile>,
    /// Content hashes of files that did not load, so a poll does not report them again.
    pub failed_files: HashMap<PathBuf, u64>,
    /// Each plugin file's stamp when it was last read whole: the safety-net poll reads only
    /// the files whose stamp moved.
    pub stamps: HashMap<PathBuf, Stamp>,
    pub wanted: BTreeMap<String, Wanted>,
    /// Wanted jobs whose spec could not start (bad options, say): not tried again until
    /// their spec changes or their plugin does.
    pub refused: HashMap<String, JobSpec>,
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
            stamps: HashMap::new(),
            wanted: BTreeMap::new(),
            refused: HashMap::new(),
            helpers: HashMap::new(),
        }
    }

    /// The names of the loaded plugins, sorted, for messages.
    pub fn plugin_names(&self) -> String {
        let mut names: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
        names.sort();
        names.join(", ")
    }

    /// Whether a job or a helper names the plugin `name`.
    pub fn needs(&self, name: &str) -> bool {
        self.wanted.values().any(|w| w.spec.plugin == name)
            || self.config.helpers.iter().any(|h| h.plugin == name)
    }

    /// The file that declares the plugin `name`, loaded or not.
    pub fn file_declaring(&self, name: &str) -> Option<PathBuf> {
        self.files
            .iter()
            .find(|(_, f)| f.name == name)
            .map(|(path, _)| path.clone())
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
    /// Plugins found but not loaded (nothing names them): name and file.
    pub unused: Vec<(String, PathBuf)>,
    /// The configured helpers: name, plugin, interval.
    pub helpers: Vec<(String, String, std::time::Duration)>,
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
        let mut unused: Vec<(String, PathBuf)> = state
            .files
            .iter()
            .filter(|(_, f)| !state.plugins.contains_key(&f.name))
            .map(|(path, f)| (f.name.clone(), path.clone()))
            .collect();
        unused.sort();
        Published {
            wanted: state.wanted.values().cloned().collect(),
            plugins,
            unused,
            helpers: state
                .config
                .helpers
                .iter()
                .map(|h| {
                    let every = h.interval.unwrap_or(state.config.host.interval);
                    (h.called().to_string(), h.plugin.clone(), every)
                })
                .collect(),
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
