//! What makes the host look again: file events from the plugins directory and the config
//! file's folder (notify), SIGHUP, and a slow poll as a safety net against missed events or
//! an overflowing inotify queue. Each becomes a `Change` for the reloader.

use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::loading::loader::is_plugin_file;
use crate::signature::Trust;

/// Something to look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A plugin file was written, renamed, or removed.
    PluginFile(PathBuf),
    /// The config file was written or replaced.
    Config,
    /// Look at everything (SIGHUP, the poll, or events were lost).
    Everything,
}

/// How often everything is looked at again, events or not.
const POLL_EVERY: Duration = Duration::from_secs(30);

/// Watches `plugins_dir` and the folder of `config`, and polls as a safety net (alone, said
/// once, where watching is impossible). Keep what it returns alive to keep watching.
pub fn start(plugins_dir: &Path, config: &Path, tx: Sender<Change>) -> Option<impl Watcher> {
    poll(POLL_EVERY, tx.clone());
    match watch(plugins_dir, config, tx) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); polling every {POLL_EVERY:?} instead",
                plugins_dir.display()
            );
            None
        }
    }
}

fn watch(plugins_dir: &Path, config: &Path, tx: Sender<Change>) -> notify::Result<impl Watcher> {
    let config_name = config.file_name().map(|n| n.to_owned());
    let config_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let plugins = plugins_dir
        .canonicalize()
        .unwrap_or_else(|_| plugins_dir.to_path_buf());
    let plugins_seen = plugins.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("file watching: {e}; looking at everything again");
                let _ = tx.send(Change::Everything);
                return;
            }
        };
        if event.need_rescan() {
            let _ = tx.send(Change::Everything);
        }
        // Opening or reading a file is no change.
        if matches!(
            event.kind,
            notify::EventKind::Access(notify::event::AccessKind::Open(_))
        ) || matches!(
            event.kind,
            notify::EventKind::Access(notify::event::AccessKind::Read)
        ) {
            return;
        }
        for path in &event.paths {
            if path.file_name() == config_name.as_deref() {
                let _ = tx.send(Change::Config);
            } else {
                // A signature's change is its plugin file's.
                let plugin = Trust::signed_file(path).unwrap_or_else(|| path.clone());
                if is_plugin_file(&plugin)
                    && plugin.parent().is_some_and(|d| same_dir(d, &plugins_seen))
                {
                    let _ = tx.send(Change::PluginFile(plugin));
                }
            }
        }
    })?;
    watcher.watch(plugins_dir, RecursiveMode::NonRecursive)?;
    if !same_dir(config_dir, &plugins) {
        watcher.watch(config_dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

fn same_dir(a: &Path, canonical_b: &Path) -> bool {
    a.canonicalize().map(|a| a == canonical_b).unwrap_or(false)
}

/// Sends `Change::Everything` every `every`, until the receiver is gone.
fn poll(every: Duration, tx: Sender<Change>) {
    std::thread::Builder::new()
        .name("poll".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if tx.send(Change::Everything).is_err() {
                return;
            }
        })
        .expect("spawn the poll thread");
}
