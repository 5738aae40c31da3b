//! The plugins of one directory, by the names they declare.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::loading::loader::{self, LoadError, Plugin};
use crate::model::Probe;
use crate::signature::Trust;

/// Loads every plugin file in `dir`. Returns the plugins by declared name, and one line
/// per file that could not be used.
pub fn load_dir(
    dir: &Path,
    probe: Probe,
    trust: &Trust,
) -> (HashMap<String, Arc<Plugin>>, Vec<String>) {
    let mut plugins: HashMap<String, Arc<Plugin>> = HashMap::new();
    let mut problems = Vec::new();
    let files = match loader::plugin_files(dir) {
        Ok(files) => files,
        Err(e) => return (plugins, vec![e.to_string()]),
    };
    for file in files {
        match loader::load(&file, probe, trust) {
            Ok(plugin) => {
                if let Some(first) = plugins.get(&plugin.name) {
                    problems.push(format!(
                        "{} and {} both declare the plugin {:?}; using the first",
                        first.file.display(),
                        file.display(),
                        plugin.name
                    ));
                    continue;
                }
                tracing::info!(
                    "loaded plugin {} {} ({}) from {} in {:?} (generation {})",
                    plugin.name,
                    plugin.version,
                    plugin.description,
                    file.display(),
                    plugin.load_time,
                    plugin.generation
                );
                plugins.insert(plugin.name.clone(), Arc::new(plugin));
            }
            Err(LoadError { file, reason }) => {
                problems.push(format!("plugin {} not loaded: {reason}", file.display()));
            }
        }
    }
    (plugins, problems)
}
