//! Loading plugins. Never dlopen the watched file: copy it to a private, uniquely named file,
//! check that it is a whole ELF object, then load the copy through abi_stable's checks
//! (`lib_header_from_path(..).init_root_module()`: the `load_from_*` helpers would cache one
//! module per type for the whole process, making a second plugin silently the first).
//! abi_stable never unloads a library; each load is a generation that stays mapped.
//!
//! A plugin built against plugin-api 0.1.6 or later declares its name in its file, where
//! `open` reads it without copying or mapping anything: the gatherer loads only the plugins
//! that jobs and helpers name, and keeps the others' names until one is wanted.
//!
//! With process isolation on the host (`[host] isolation = "process"`) the host maps
//! nothing: a short-lived worker reads the plugin's declaration, the jobs run in workers of
//! their own, and the host maps a plugin only when an in-process job or a helper needs it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::loading::library::{open_module, Module, PrivateCopy};
use crate::loading::{elf, safety};
use crate::model::Probe;
use crate::signature::{Signed, Trust};

/// A plugin loaded and ready to make jobs.
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub description: String,
    pub is_helper: bool,
    /// The file it was loaded from (the watched path, not the private copy).
    pub file: PathBuf,
    /// That file's content hash when it was loaded.
    pub hash: u64,
    /// The private copy, kept while this generation lives: workers load it, and the host
    /// maps it when first needed.
    pub copy: Arc<PrivateCopy>,
    module: OnceLock<Result<Module, String>>,
    /// How many loads this process has made so far, this one included.
    pub generation: u64,
    pub load_time: Duration,
    /// Whose signature let it load.
    pub signed: Signed,
    /// Of `load_time`, the signature check.
    pub check_time: Duration,
}

impl Plugin {
    /// The plugin mapped into this process (on first use).
    pub fn module(&self) -> Result<Module, String> {
        self.module
            .get_or_init(|| open_module(self.copy.path()))
            .clone()
    }
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
    safety::check_dir(dir).map_err(|reason| LoadError {
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

/// What tells that a file changed without reading it: its size, inode, and the times of
/// its last write and last change (a chmod, a rename over it); the same of its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    file: FileStamp,
    signature: Option<FileStamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    ino: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            ino: meta.ino(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Stamp {
    /// The stamp of the plugin file at `path` (whose metadata is `meta`).
    pub fn of(path: &Path, meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            file: FileStamp::of(meta),
            signature: std::fs::metadata(Trust::signature_of(path))
                .ok()
                .map(|m| FileStamp::of(&m)),
        }
    }

    /// The stamp of the file at `path` now; None if it is gone.
    pub fn read(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(path, &m))
    }
}

/// A plugin file, opened and found safe to load, not yet read whole.
#[derive(Debug)]
pub struct PluginFile {
    pub path: PathBuf,
    file: std::fs::File,
    len: u64,
    /// Its stamp when opened.
    pub stamp: Stamp,
    /// Its content's hash, to tell whether it changed.
    pub hash: u64,
    /// A hash of its signature file's content (0 without one): a new signature is a new
    /// chance for a file refused before.
    pub signature_hash: u64,
    /// The name it declares in its ELF file; None for a plugin older than plugin-api 0.1.6
    /// (which is mapped to learn its name).
    pub declared: Option<String>,
}

/// Opens a plugin file, checking the directory that holds it, and its owner and mode on
/// the very file opened (no window for a swap between the check and the read). Every open
/// checks the directory: a single file event is enough to load a file. Reads the file once,
/// a block at a time, for its hash; nothing of it stays in memory.
pub fn open(path: &Path) -> Result<PluginFile, ReadError> {
    use std::io::Read;
    if let Some(dir) = path.parent().filter(|d| d.is_dir()) {
        safety::check_dir(dir).map_err(ReadError::Refused)?;
    }
    let unreadable = |e: std::io::Error| ReadError::Refused(format!("cannot read: {e}"));
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing,
        _ => unreadable(e),
    })?;
    let meta = file.metadata().map_err(unreadable)?;
    if let Some(problem) = safety::problem(path, &meta, false) {
        return Err(ReadError::Refused(problem));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut block = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut block).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        len += n as u64;
    }
    let declared = elf::declared_name(&object::ReadCache::new(&file));
    let signature_hash = std::fs::read(Trust::signature_of(path))
        .map(|s| xxhash_rust::xxh3::xxh3_64(&s))
        .unwrap_or(0);
    Ok(PluginFile {
        path: path.to_path_buf(),
        file,
        len,
        stamp: Stamp::of(path, &meta),
        hash: hasher.digest(),
        signature_hash,
        declared,
    })
}

impl PluginFile {
    /// The file's content and its signature's, as one hash: what a refusal is noted under.
    pub fn hash_with_signature(&self) -> u64 {
        self.hash ^ self.signature_hash.rotate_left(1)
    }
}

/// Loads one plugin file.
pub fn load(file: &Path, probe: Probe, trust: &Trust) -> Result<Plugin, LoadError> {
    let opened = open(file).map_err(|e| LoadError {
        file: file.to_path_buf(),
        reason: match e {
            ReadError::Missing => "cannot read: it is gone".into(),
            ReadError::Refused(reason) => reason,
        },
    })?;
    load_opened(opened, probe, trust)
}

/// Loads a plugin file just opened.
pub fn load_opened(opened: PluginFile, probe: Probe, trust: &Trust) -> Result<Plugin, LoadError> {
    let file = opened.path.clone();
    let err = |reason: String| LoadError {
        file: file.clone(),
        reason,
    };
    let started = Instant::now();
    // The copy is what gets checked and mapped: whatever happens to the watched file later
    // (a `cp` over it, a truncation) cannot touch the running code.
    let copy = PrivateCopy::of(&file, opened.file, opened.len)
        .map_err(|e| err(format!("cannot make a private copy: {e}")))?;
    let checking = Instant::now();
    let signed = trust
        .check(&file, copy.path())
        .map_err(|e| err(e.to_string()))?;
    let check_time = checking.elapsed();
    copy.release_debug_info();
    copy.check().map_err(|e| err(e.to_string()))?;
    let copied = started.elapsed();
    let module = OnceLock::new();
    let info = match probe {
        Probe::InProcess => {
            let mapped = open_module(copy.path()).map_err(err)?;
            let _ = module.set(Ok(mapped));
            mapped.declaration()
        }
        Probe::Worker => crate::loading::worker::probe(copy.path()).map_err(err)?,
    };
    if let Some(declared) = opened.declared.filter(|d| *d != info.name) {
        return Err(err(format!(
            "its file declares the name {declared:?} but the plugin says {:?}",
            info.name
        )));
    }
    tracing::debug!(
        "{}: copied and checked in {copied:?}, declaration read at {:?}",
        file.display(),
        started.elapsed()
    );
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(Plugin {
        name: info.name,
        version: info.version,
        description: info.description,
        is_helper: info.is_helper,
        file,
        hash: opened.hash,
        copy: Arc::new(copy),
        module,
        generation,
        load_time: started.elapsed(),
        signed,
        check_time,
    })
}
