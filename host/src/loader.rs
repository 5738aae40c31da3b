//! Loading plugins. Never dlopen the watched file: copy it to a private, uniquely named file,
//! check that it is a whole ELF object, then load the copy through abi_stable's checks
//! (`lib_header_from_path(..).init_root_module()`: the `load_from_*` helpers would cache one
//! module per type for the whole process, making a second plugin silently the first).
//! abi_stable never unloads a library; each load is a generation that stays mapped.
//!
//! With process isolation on the host (`[host] isolation = "process"`) the host maps
//! nothing: a short-lived worker reads the plugin's declaration, the jobs run in workers of
//! their own, and the host maps a plugin only when an in-process job or a helper needs it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
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
    /// The private copy, kept while this generation lives: workers load it, and the host
    /// maps it when first needed.
    pub copy: PrivateCopy,
    module: OnceLock<Result<PluginModRef, String>>,
    /// How many loads this process has made so far, this one included.
    pub generation: u64,
    pub load_time: Duration,
}

impl Plugin {
    /// The plugin mapped into this process (on first use).
    pub fn module(&self) -> Result<PluginModRef, String> {
        self.module
            .get_or_init(|| open_module(&self.copy.0))
            .clone()
    }
}

/// A private copy of a plugin file, removed when dropped.
#[derive(Debug)]
pub struct PrivateCopy(pub PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a plugin's declaration (name, version, helper or not) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Map it into the host (it stays mapped: abi_stable never unloads).
    InProcess,
    /// Ask a short-lived worker process, which maps it and exits: the host maps nothing.
    Worker,
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
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// The number of plugin libraries this process has mapped and cannot unmap.
pub fn generations() -> u64 {
    MAPPED.load(Ordering::Relaxed)
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
    crate::safety::check_dir(dir).map_err(|reason| LoadError {
        file: dir.to_path_buf(),
        reason,
    })?;
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

/// Why a plugin file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// It is gone (a removal).
    Missing,
    /// Unsafe to load (see `safety`), or unreadable: the reason, in one line.
    Refused(String),
}

/// Reads a plugin file, checking its owner and mode on the very file read (no window for a
/// swap between the check and the read).
pub fn read(file: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing,
        _ => ReadError::Refused(format!("cannot read: {e}")),
    })?;
    let meta = f
        .metadata()
        .map_err(|e| ReadError::Refused(format!("cannot read: {e}")))?;
    if let Some(problem) = crate::safety::problem(file, &meta, false) {
        return Err(ReadError::Refused(problem));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut data)
        .map_err(|e| ReadError::Refused(format!("cannot read: {e}")))?;
    Ok(data)
}

/// Loads one plugin file.
pub fn load(file: &Path, probe: Probe) -> Result<Plugin, LoadError> {
    let data = read(file).map_err(|e| LoadError {
        file: file.to_path_buf(),
        reason: match e {
            ReadError::Missing => "cannot read: it is gone".into(),
            ReadError::Refused(reason) => reason,
        },
    })?;
    load_data(file, &data, probe)
}

/// Loads a plugin from the bytes just read from `file`.
pub fn load_data(file: &Path, data: &[u8], probe: Probe) -> Result<Plugin, LoadError> {
    let err = |reason: String| LoadError {
        file: file.to_path_buf(),
        reason,
    };
    let started = Instant::now();
    elf::check(data).map_err(|e| err(e.to_string()))?;

    // The copy is what gets mapped: whatever happens to the watched file later (a `cp` over
    // it, a truncation) cannot touch the running code.
    let copy =
        private_copy(file, data).map_err(|e| err(format!("cannot make a private copy: {e}")))?;
    let copy = PrivateCopy(copy);
    let copied = started.elapsed();
    let module = OnceLock::new();
    let info = match probe {
        Probe::InProcess => {
            let mapped = open_module(&copy.0).map_err(err)?;
            let _ = module.set(Ok(mapped));
            Declaration::of(mapped)
        }
        Probe::Worker => crate::isolation::probe(&copy.0).map_err(err)?,
    };
    tracing::debug!(
        "{}: checked and copied in {copied:?}, declaration read at {:?}",
        file.display(),
        started.elapsed()
    );
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(Plugin {
        name: info.name,
        version: info.version,
        description: info.description,
        is_helper: info.is_helper,
        file: file.to_path_buf(),
        copy,
        module,
        generation,
        load_time: started.elapsed(),
    })
}

/// What a plugin declares about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Declaration {
    pub name: String,
    pub version: String,
    pub description: String,
    pub is_helper: bool,
}

impl Declaration {
    pub fn of(module: PluginModRef) -> Declaration {
        let info: PluginInfo = (module.info())();
        Declaration {
            name: info.name.into(),
            version: info.version.into(),
            description: info.description.into(),
            is_helper: info.is_helper,
        }
    }
}

/// Maps a library (a private copy) into this process through abi_stable's checks and the
/// version policy. Never unmapped.
pub fn open_module(library: &Path) -> Result<PluginModRef, String> {
    let header = lib_header_from_path(library).map_err(|e| short_abi_report(&e.to_string()))?;
    check_api_version(header)?;
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| short_abi_report(&e.to_string()))?;
    MAPPED.fetch_add(1, Ordering::Relaxed);
    Ok(module)
}

/// Copies `data` to a new file of its own, preferably in memory (tmpfs: `$XDG_RUNTIME_DIR`
/// or `/dev/shm`, five times faster than a disk-backed temporary directory for a large
/// library). Every copy has a name never used before: glibc would take a second library
/// under a name it has loaded for the one it has. It lives as long as its generation (see
/// `PrivateCopy`): workers started later load it, whatever happened to the watched file.
fn private_copy(file: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let candidates = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
        Some(std::env::temp_dir()),
    ];
    let mut last_error = None;
    for base in candidates.into_iter().flatten() {
        let dir = base.join(format!("spud-host-{}", std::process::id()));
        let copy = dir.join(format!("{stem}-{n}.so"));
        let written = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o700)
                    .open(&copy)
            })
            // No fsync: the copy lives only until dlopen has mapped it.
            .and_then(|mut out| std::io::Write::write_all(&mut out, data));
        match written {
            Ok(()) => return Ok(copy),
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no place for a copy")))
}

/// The plugin API's version policy: below 1.0, a plugin built against the same 0.minor
/// loads (any patch, older or newer); from 1.0, the same major. abi_stable alone would also
/// let a plugin built against a newer 0.minor through whenever the layouts it checks agree.
fn check_api_version(header: &abi_stable::library::LibHeader) -> Result<(), String> {
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionNumber;
    let ours = VersionNumber::new(PluginModRef::VERSION_STRINGS).map_err(|e| e.to_string())?;
    let theirs = VersionNumber::new(header.version_strings())
        .map_err(|e| format!("unreadable API version: {e}"))?;
    let compatible = if ours.major == 0 {
        theirs.major == 0 && theirs.minor == ours.minor
    } else {
        theirs.major == ours.major
    };
    if compatible {
        Ok(())
    } else {
        let speaks = if ours.major == 0 {
            format!("0.{}.x", ours.minor)
        } else {
            format!("{}.x", ours.major)
        };
        Err(format!(
            "incompatible plugin: built against spud-plugin-api {theirs}, this host loads plugins built against {speaks}"
        ))
    }
}

/// abi_stable's report on an incompatible library runs to hundreds of lines. The user gets
/// its first `Error:` findings, each with the type and what was expected and found; the whole
/// report goes to the debug log.
fn short_abi_report(report: &str) -> String {
    tracing::debug!("abi_stable's full report:\n{report}");
    let raw: Vec<&str> = report.lines().collect();
    let first_error = raw
        .iter()
        .position(|l| l.starts_with("Error:"))
        .unwrap_or(raw.len());
    // The type being compared when things went wrong: the last one named at the top level
    // of the comparison (four spaces in) before the first error.
    let current_type = raw[..first_error]
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("    type:"))
        .unwrap_or("the root module");
    let lines: Vec<&str> = raw.iter().map(|l| l.trim()).collect();
    let mut findings: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        // The first line after "Expected:" and after "Found:".
        let after = |label: &str| {
            lines[i..]
                .iter()
                .skip_while(|l| **l != label)
                .nth(1)
                .copied()
                .unwrap_or("?")
        };
        let finding = format!(
            "{current_type}: {what} (expected {}, found {})",
            after("Expected:"),
            after("Found:")
        );
        if !findings.contains(&finding) {
            findings.push(finding);
        }
        if findings.len() == 3 {
            break;
        }
    }
    let summary = if findings.is_empty() {
        lines
            .iter()
            .find(|l| !l.is_empty())
            .copied()
            .unwrap_or("")
            .to_string()
    } else {
        findings.join("; ")
    };
    format!("incompatible plugin: {summary} (RUST_LOG=debug shows abi_stable's full report)")
}
