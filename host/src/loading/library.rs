//! A plugin library as the host meets it: a private copy of the file, mapped through
//! abi_stable's checks and the API's version policy, its declaration, and the calls into
//! it. Calls go through the typed module of plugin-api 0.1.2 when the plugin has it (its
//! layout checked like the root module's); a plugin built against an older 0.1 answers
//! through the root module's untyped calls, its failures all plain errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use abi_stable::library::{lib_header_from_path, RawLibrary};
use abi_stable::std_types::{RResult, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use spud_plugin_api::ffi::{
    self, CollectorBox, HostBox, JobDef, PluginInfo, PluginModRef, SocketsHook, TypedModRef,
};

use crate::loading::elf::{self, ElfError};
use crate::model::{Failure, FailureKind};

/// A private copy of a plugin file, removed when dropped.
#[derive(Debug)]
pub struct PrivateCopy(PathBuf);

impl PrivateCopy {
    /// Copies `len` bytes of `source` (opened from `file`) to a new private copy, in the
    /// kernel: nothing of it passes through this process's memory. Its signature is checked
    /// on this copy, and then its debugging information is dropped (`release_debug_info`).
    pub fn of(file: &Path, mut source: std::fs::File, len: u64) -> std::io::Result<PrivateCopy> {
        use std::io::{Read, Seek};
        let (path, mut written) = new_copy_file(file)?;
        let copy = PrivateCopy(path);
        source.seek(std::io::SeekFrom::Start(0))?;
        let copied = std::io::copy(&mut source.take(len), &mut written)?;
        if copied != len {
            return Err(std::io::Error::other(format!(
                "the file shrank while being copied ({copied} of {len} bytes)"
            )));
        }
        Ok(copy)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Checks that the copy is a whole ELF shared object, reading only its headers.
    pub fn check(&self) -> Result<(), ElfError> {
        let file = std::fs::File::open(&self.0).map_err(|_| ElfError::NotElf)?;
        elf::check(&object::ReadCache::new(&file))
    }

    /// Frees the copy's debugging information: never mapped, it is most of a library built
    /// with `debug` on (11 of 13 MB), and a copy in memory would hold it for the host's
    /// life. The file keeps its size and layout (holes read as zeros).
    pub fn release_debug_info(&self) {
        use std::os::fd::AsRawFd;
        const PAGE: u64 = 4096;
        let Ok(copy) = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(&self.0)
        else {
            return;
        };
        for range in elf::debug_ranges(&object::ReadCache::new(&copy)) {
            // Whole pages only: a page shared with a section that is kept stays.
            let start = range.start.div_ceil(PAGE) * PAGE;
            let end = range.end / PAGE * PAGE;
            if end <= start {
                continue;
            }
            // SAFETY: a plain system call on a file descriptor this process owns.
            let punched = unsafe {
                libc::fallocate(
                    copy.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    start as libc::off_t,
                    (end - start) as libc::off_t,
                )
            };
            if punched != 0 {
                // A file system without holes: the copy keeps those bytes, nothing else.
                tracing::debug!(
                    "{}: debug information kept: {}",
                    self.0.display(),
                    std::io::Error::last_os_error()
                );
                return;
            }
        }
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes a new, empty file for a copy of `file`, preferably in memory (tmpfs:
/// `$XDG_RUNTIME_DIR` or `/dev/shm`, five times faster than a disk-backed temporary
/// directory for a large library). Every copy has a name never used before: glibc would
/// take a second library under a name it has loaded for the one it has. It lives as long as
/// its generation (see `PrivateCopy`): workers started later load it, whatever happened to
/// the watched file.
fn new_copy_file(file: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let mut last_error = None;
    for base in copy_places() {
        let dir = base.join(format!("{COPY_DIR_PREFIX}{}", std::process::id()));
        let copy = dir.join(format!("{stem}-{n}.so"));
        // No fsync: the copy lives only as long as this process.
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o700)
                    .open(&copy)
            });
        match made {
            Ok(out) => return Ok((copy, out)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no place for a copy")))
}

/// Where private copies go, best first. In memory, they cost memory: see `remove_copies`.
fn copy_places() -> impl Iterator<Item = PathBuf> {
    [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
        Some(std::env::temp_dir()),
    ]
    .into_iter()
    .flatten()
}

/// Each host's copies are in `spud-host-<pid>` of a place.
const COPY_DIR_PREFIX: &str = "spud-host-";

/// Removes this process's private copies, at its end: a generation's copy is needed only
/// while its process lives (the mapping stays valid without the file).
pub fn remove_own_copies() {
    remove_copies(true);
}

/// Removes the private copies of hosts that are no longer running (killed, crashed: a copy
/// in memory outlives its process).
pub fn remove_stale_copies() {
    remove_copies(false);
}

fn remove_copies(ours: bool) {
    let me = std::process::id();
    for place in copy_places() {
        let Ok(entries) = std::fs::read_dir(&place) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(COPY_DIR_PREFIX))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let gone = !Path::new(&format!("/proc/{pid}")).exists();
            if (ours && pid == me) || (!ours && pid != me && gone) {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) if pid != me => tracing::info!(
                        "removed the plugin copies {} left by a host that is gone",
                        entry.path().display()
                    ),
                    Ok(()) => {}
                    Err(e) => tracing::debug!("{}: {e}", entry.path().display()),
                }
            }
        }
    }
}

static MAPPED: AtomicU64 = AtomicU64::new(0);

/// The number of plugin libraries this process has mapped and cannot unmap.
pub fn generations() -> u64 {
    MAPPED.load(Ordering::Relaxed)
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
    fn of(module: PluginModRef) -> Declaration {
        let info: PluginInfo = (module.info())();
        Declaration {
            name: info.name.into(),
            version: info.version.into(),
            description: info.description.into(),
            is_helper: info.is_helper,
        }
    }
}

/// A plugin mapped into this process: its root module, and its typed module if it has one.
#[derive(Clone, Copy)]
pub struct Module {
    root: PluginModRef,
    typed: Option<TypedModRef>,
}

/// Maps a library (a private copy) into this process through abi_stable's checks and the
/// version policy. Never unmapped.
pub fn open_module(library: &Path) -> Result<Module, String> {
    let header = lib_header_from_path(library).map_err(|e| match e {
        // A shared library, but nobody's SPUD plugin (`libz.so` copied in by mistake).
        abi_stable::library::LibraryError::GetSymbolError { .. } => {
            "not a SPUD plugin: no spud root module".to_string()
        }
        e => short_abi_report(&e.to_string()),
    })?;
    check_api_version(header)?;
    let root = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| short_abi_report(&e.to_string()))?;
    MAPPED.fetch_add(1, Ordering::Relaxed);
    // The library is mapped already: this takes another reference to the same mapping,
    // kept (like abi_stable's) for as long as the process lives.
    let raw = RawLibrary::load_at(library).map_err(|e| e.to_string())?;
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));
    hand_sockets(raw)?;
    Ok(Module {
        root,
        typed: typed_module(raw)?,
    })
}

/// The hook every plugin mapped from now on gets, to ask for the sockets the host keeps
/// (set by the host at start; a worker process sets none, so its plugins bind their own).
static SOCKETS: OnceLock<SocketsHook> = OnceLock::new();

/// Offers `hook` to every plugin mapped from now on.
pub fn offer_sockets(hook: SocketsHook) {
    let _ = SOCKETS.set(hook);
}

/// Hands the host's socket hook to a plugin built against 0.1.5 or later, once its layout
/// checks out; an older plugin has no place for it and binds its own sockets.
fn hand_sockets(raw: &RawLibrary) -> Result<(), String> {
    let Some(hook) = SOCKETS.get() else {
        return Ok(());
    };
    // SAFETY: these symbols, where present, are the functions plugin-api's
    // `export_plugin!` defines with exactly these signatures.
    unsafe {
        let Ok(accept) = raw.get::<extern "C" fn(SocketsHook)>(ffi::SOCKETS_SYMBOL) else {
            return Ok(());
        };
        let layout = raw
            .get::<extern "C" fn() -> *const TypeLayout>(ffi::SOCKETS_LAYOUT_SYMBOL)
            .map_err(|_| "incompatible plugin: it takes sockets but has not their layout")?;
        abi_stable::abi_stability::abi_checking::check_layout_compatibility(
            <SocketsHook as StableAbi>::LAYOUT,
            &*layout(),
        )
        .map_err(|e| short_abi_report(&e.to_string()))?;
        accept(*hook);
    }
    Ok(())
}

/// The typed module of a plugin built against 0.1.2 or later; None for an older one.
fn typed_module(raw: &RawLibrary) -> Result<Option<TypedModRef>, String> {
    // SAFETY: these symbols, where present, are the functions plugin-api's
    // `export_plugin!` defines with exactly these signatures.
    let (module, layout) = unsafe {
        let Ok(module) = raw.get::<extern "C" fn() -> TypedModRef>(ffi::TYPED_SYMBOL) else {
            return Ok(None);
        };
        let layout = raw
            .get::<extern "C" fn() -> *const TypeLayout>(ffi::TYPED_LAYOUT_SYMBOL)
            .map_err(|_| "incompatible plugin: it has a typed module but not its layout")?;
        // SAFETY: a pointer to the plugin's own `'static` layout.
        (*module, &*layout())
    };
    abi_stable::abi_stability::abi_checking::check_layout_compatibility(
        <TypedModRef as StableAbi>::LAYOUT,
        layout,
    )
    .map_err(|e| short_abi_report(&e.to_string()))?;
    Ok(Some(module()))
}

impl Module {
    /// What the plugin declares about itself.
    pub fn declaration(&self) -> Declaration {
        Declaration::of(self.root)
    }

    /// Asks the plugin for a collector for one job.
    pub fn new_job(&self, spec: ffi::JobSpec, host: HostBox) -> Result<CollectorBox, Failure> {
        match self.typed {
            Some(typed) => typed_result((typed.new_job())(spec, host)),
            None => untyped_result((self.root.new_job())(spec, host)),
        }
    }

    /// Asks a helper plugin for the jobs it wants now.
    pub fn helper_jobs(&self, spec: ffi::JobSpec, host: HostBox) -> Result<RVec<JobDef>, Failure> {
        match self.typed {
            Some(typed) => typed_result((typed.helper_jobs())(spec, host)),
            None => untyped_result((self.root.helper_jobs())(spec, host)),
        }
    }

    /// One collect of a pull job this module made.
    pub fn collect(&self, collector: &mut CollectorBox) -> Result<(), Failure> {
        match self.typed {
            Some(typed) => typed_result((typed.collect())(collector)),
            None => untyped_result(collector.collect()),
        }
    }

    /// A service's run, until it returns.
    pub fn run(&self, collector: &mut CollectorBox) -> Result<(), Failure> {
        match self.typed {
            Some(typed) => typed_result((typed.run())(collector)),
            None => untyped_result(collector.run()),
        }
    }
}

fn typed_result<T>(result: RResult<T, ffi::Failure>) -> Result<T, Failure> {
    result.into_result().map_err(|f| {
        let kind = match f.kind {
            ffi::FailureKind::Error => FailureKind::Error,
            ffi::FailureKind::Panic => FailureKind::Panic,
            ffi::FailureKind::Timeout => FailureKind::Timeout,
        };
        Failure::new(kind, f.message)
    })
}

fn untyped_result<T>(result: RResult<T, abi_stable::std_types::RString>) -> Result<T, Failure> {
    result.into_result().map_err(Failure::error)
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
