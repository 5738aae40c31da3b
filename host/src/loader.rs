//! Loading plugins. Never dlopen the watched file: copy it to a private, uniquely named file,
//! check that it is a whole ELF object, then load the copy through abi_stable's checks
//! (`lib_header_from_path(..).init_root_module()`: the `load_from_*` helpers would cache one
//! module per type for the whole process, making a second plugin silently the first).
//! abi_stable never unloads a library; each load is a generation that stays mapped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abi_stable::library::lib_header_from_path;
use spud_plugin_api::ffi::{PluginInfo, PluginModRef};

use crate::elf;

/// A plugin loaded and ready to make jobs.
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub description: String,
    pub is_helper: bool,
    /// The file it was loaded from (the watched path, not the private copy).
    pub file: PathBuf,
    pub module: PluginModRef,
    /// How many loads this process has made so far, this one included.
    pub generation: u64,
    pub load_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plugin({} {} from {})",
            self.name,
            self.version,
            self.file.display()
        )
    }
}

/// Why a file did not load.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Loads generations: the number of libraries this process has mapped and cannot unmap.
pub fn generations() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Whether a directory entry is a plugin candidate: `*.so`, not hidden (publish a new
/// version by writing `.name.so.tmp` and renaming it over `name.so`).
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".so")
}

/// Every plugin file in `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        file: dir.to_path_buf(),
        reason: format!("cannot read the plugins directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads one plugin file.
pub fn load(file: &Path) -> Result<Plugin, LoadError> {
    let err = |reason: String| LoadError {
        file: file.to_path_buf(),
        reason,
    };
    let started = Instant::now();
    let data = std::fs::read(file).map_err(|e| err(format!("cannot read: {e}")))?;
    elf::check(&data).map_err(|e| err(e.to_string()))?;

    // The copy is what gets mapped: whatever happens to the watched file later (a `cp` over
    // it, a truncation) cannot touch the running code.
    let copy =
        private_copy(file, &data).map_err(|e| err(format!("cannot make a private copy: {e}")))?;
    let loaded =
        lib_header_from_path(&copy).and_then(|header| header.init_root_module::<PluginModRef>());
    // Mapped (or refused): the copy's name is no longer needed.
    let _ = std::fs::remove_file(&copy);
    let module = loaded.map_err(|e| err(short_abi_report(&e.to_string())))?;
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;

    let info: PluginInfo = (module.info())();
    Ok(Plugin {
        name: info.name.into(),
        version: info.version.into(),
        description: info.description.into(),
        is_helper: info.is_helper,
        file: file.to_path_buf(),
        module,
        generation,
        load_time: started.elapsed(),
    })
}

fn private_copy(file: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("spud-host-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let copy = dir.join(format!("{stem}-{n}.so"));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&copy)?;
    std::io::Write::write_all(&mut out, data)?;
    out.sync_all()?;
    Ok(copy)
}

/// abi_stable's report on an incompatible library runs to a thousand lines. The user gets
/// its `Error` lines (at most a few); the whole of it goes to the debug log.
fn short_abi_report(report: &str) -> String {
    tracing::debug!("abi_stable's full report:\n{report}");
    let errors: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Error") || l.contains("version"))
        .take(3)
        .collect();
    let first = report
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let summary = if errors.is_empty() {
        first.to_string()
    } else {
        errors.join("; ")
    };
    format!("incompatible plugin: {summary} (RUST_LOG=debug shows abi_stable's full report)")
}
