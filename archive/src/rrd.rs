//! librrd, the library behind `rrdtool`, loaded when an archive opens rather than linked:
//! the binaries build and run without it, and only archiving needs Debian's `librrd8`.
//! Only the thread-safe `_r` entry points are used; librrd keeps its error text per thread.

use std::ffi::{c_char, c_int, c_ulong, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

use libloading::{Library, Symbol};

type CreateFn =
    unsafe extern "C" fn(*const c_char, c_ulong, i64, c_int, *const *const c_char) -> c_int;
type UpdateFn =
    unsafe extern "C" fn(*const c_char, *const c_char, c_int, *const *const c_char) -> c_int;
type LastFn = unsafe extern "C" fn(*const c_char) -> i64;
type FetchFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *mut i64,
    *mut i64,
    *mut c_ulong,
    *mut c_ulong,
    *mut *mut *mut c_char,
    *mut *mut f64,
) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut std::ffi::c_void);
type ErrorFn = unsafe extern "C" fn() -> *const c_char;
type ClearFn = unsafe extern "C" fn();
type ConnectFn = unsafe extern "C" fn(*const c_char) -> c_int;
type CachedUpdateFn = unsafe extern "C" fn(*const c_char, c_int, *const *const c_char) -> c_int;
type FlushIfDaemonFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;

/// The longest command librrd sends rrdcached (`RRD_CMD_MAX` in rrd_client.c), less a margin.
const CACHED_LINE: usize = 4000;

/// The sonames tried, newest first.
const SONAMES: [&str; 2] = ["librrd.so.8", "librrd.so"];

pub struct Librrd {
    create: CreateFn,
    update: UpdateFn,
    last: LastFn,
    fetch: FetchFn,
    free: FreeFn,
    error: ErrorFn,
    clear: ClearFn,
    connect: ConnectFn,
    cached_update: CachedUpdateFn,
    flush_if_daemon: FlushIfDaemonFn,
    /// Keeps the functions above mapped.
    _lib: Library,
}

/// librrd, loaded once and never unloaded: it keeps a per-thread error buffer whose
/// destructor runs as each thread that used it ends, which must find the code still there.
static LOADED: OnceLock<Result<Librrd, String>> = OnceLock::new();

impl Librrd {
    /// The process's librrd, loaded on first use.
    pub fn open() -> Result<&'static Librrd, String> {
        LOADED
            .get_or_init(Librrd::load)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load() -> Result<Librrd, String> {
        let mut why = Vec::new();
        for name in SONAMES {
            // SAFETY: librrd's initialisers only set up its own state.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::bind(lib).map_err(|e| format!("{name}: {e}")),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(format!(
            "archiving needs librrd (Debian's package librrd8, or rrdtool): {}",
            why.join("; ")
        ))
    }

    fn bind(lib: Library) -> Result<Librrd, libloading::Error> {
        // SAFETY: the types are those of rrd.h in rrdtool 1.4 to 1.9, where these
        // functions have kept their signatures.
        unsafe {
            let create: Symbol<CreateFn> = lib.get(b"rrd_create_r\0")?;
            let update: Symbol<UpdateFn> = lib.get(b"rrd_update_r\0")?;
            let last: Symbol<LastFn> = lib.get(b"rrd_last_r\0")?;
            let fetch: Symbol<FetchFn> = lib.get(b"rrd_fetch_r\0")?;
            let free: Symbol<FreeFn> = lib.get(b"rrd_freemem\0")?;
            let error: Symbol<ErrorFn> = lib.get(b"rrd_get_error\0")?;
            let clear: Symbol<ClearFn> = lib.get(b"rrd_clear_error\0")?;
            let connect: Symbol<ConnectFn> = lib.get(b"rrdc_connect\0")?;
            let cached_update: Symbol<CachedUpdateFn> = lib.get(b"rrdc_update\0")?;
            let flush_if_daemon: Symbol<FlushIfDaemonFn> = lib.get(b"rrdc_flush_if_daemon\0")?;
            Ok(Librrd {
                create: *create,
                update: *update,
                last: *last,
                fetch: *fetch,
                free: *free,
                error: *error,
                clear: *clear,
                connect: *connect,
                cached_update: *cached_update,
                flush_if_daemon: *flush_if_daemon,
                _lib: lib,
            })
        }
    }

    /// librrd's message for the call that just failed.
    fn failure(&self) -> String {
        // SAFETY: rrd_get_error returns this thread's error buffer, never null.
        let text = unsafe { CStr::from_ptr((self.error)()) };
        text.to_string_lossy().into_owned()
    }

    /// Runs a librrd call taking a file name and an argv, which returns 0 on success.
    fn with_argv(
        &self,
        path: &Path,
        args: &[String],
        call: impl FnOnce(*const c_char, c_int, *const *const c_char) -> c_int,
    ) -> Result<(), String> {
        let file = c_path(path)?;
        let args = c_strings(args)?;
        let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: clearing this thread's error is always allowed; the pointers handed to
        // `call` are NUL-terminated strings that outlive it.
        unsafe { (self.clear)() };
        if call(file.as_ptr(), argv.len() as c_int, argv.as_ptr()) == 0 {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    /// Creates `path` (refusing nothing: the caller checks it is not there) with data
    /// starting after `start` and the given DS and RRA definitions.
    pub fn create(
        &self,
        path: &Path,
        step: u64,
        start: i64,
        defs: &[String],
    ) -> Result<(), String> {
        // SAFETY: the arguments are as rrd_create_r takes them.
        self.with_argv(path, defs, |file, argc, argv| unsafe {
            (self.create)(file, step as c_ulong, start, argc, argv)
        })
    }

    /// Adds `TIME:VALUE` updates, in increasing time, to `path`.
    pub fn update(&self, path: &Path, updates: &[String]) -> Result<(), String> {
        // SAFETY: as rrd_update_r takes them; a null template means "every data source".
        self.with_argv(path, updates, |file, argc, argv| unsafe {
            (self.update)(file, std::ptr::null(), argc, argv)
        })
    }

    /// Hands `TIME:VALUE` updates of `path` to rrdcached at `daemon` (`unix:/path`, a
    /// socket's path, or `host:port`), which writes them in batches. librrd keeps one
    /// connection per process, made again here if it is to another daemon or broke.
    pub fn update_cached(
        &self,
        daemon: &str,
        path: &Path,
        updates: &[String],
    ) -> Result<(), String> {
        let addr = CString::new(daemon).map_err(|_| format!("{daemon:?} has a NUL byte"))?;
        // librrd sends one command line of at most RRD_CMD_MAX (4,096) bytes per call, and
        // fails a longer one without a word: the updates go in lines that fit.
        let room = CACHED_LINE.saturating_sub(path.as_os_str().len() + 16);
        let mut from = 0;
        while from < updates.len() {
            let mut to = from;
            let mut used = 0;
            while to < updates.len() && (to == from || used + updates[to].len() < room) {
                used += updates[to].len() + 1;
                to += 1;
            }
            // SAFETY: as rrdc_connect and rrdc_update take them (NUL-terminated strings).
            self.with_argv(path, &updates[from..to], |file, argc, argv| unsafe {
                match (self.connect)(addr.as_ptr()) {
                    0 => (self.cached_update)(file, argc, argv),
                    failed => failed,
                }
            })
            .map_err(|e| match e.is_empty() {
                true => format!("rrdcached at {daemon} refused the update"),
                false => format!("rrdcached at {daemon}: {e}"),
            })?;
            from = to;
        }
        Ok(())
    }

    /// Has rrdcached at `daemon` write what it holds of `path`, so that reading the file
    /// sees every update handed to it.
    pub fn flush_cached(&self, daemon: &str, path: &Path) -> Result<(), String> {
        let addr = CString::new(daemon).map_err(|_| format!("{daemon:?} has a NUL byte"))?;
        let file = c_path(path)?;
        // SAFETY: two NUL-terminated strings, as rrdc_flush_if_daemon takes them.
        let done = unsafe {
            (self.clear)();
            (self.flush_if_daemon)(addr.as_ptr(), file.as_ptr())
        };
        if done == 0 {
            Ok(())
        } else {
            Err(format!("rrdcached at {daemon}: {}", self.failure()))
        }
    }

    /// The time of the last update stored in `path`.
    pub fn last(&self, path: &Path) -> Result<i64, String> {
        let file = c_path(path)?;
        // SAFETY: as in `create`.
        let t = unsafe {
            (self.clear)();
            (self.last)(file.as_ptr())
        };
        if t == -1 {
            Err(self.failure())
        } else {
            Ok(t)
        }
    }
}

/// What `fetch` read: rows of the first data source, the first covering `[start, start +
/// step)` and each the next `step` seconds (None: unknown). (`rrdtool fetch` labels a row
/// with the end of its time.)
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub start: u64,
    pub step: u64,
    pub values: Vec<Option<f64>>,
}

impl Librrd {
    /// The rows of consolidation `cf` (AVERAGE, MIN, MAX) of `path` over `[start, end]` at
    /// the finest resolution of at least `step` that covers it, as `rrdtool fetch` reads.
    pub fn fetch(
        &self,
        path: &Path,
        cf: &str,
        start: u64,
        end: u64,
        step: u64,
    ) -> Result<Rows, String> {
        let file = c_path(path)?;
        let cf = CString::new(cf).map_err(|_| "NUL in a consolidation function".to_string())?;
        let (mut start, mut end, mut step) = (start as i64, end as i64, step as c_ulong);
        let (mut sources, mut names, mut data): (c_ulong, *mut *mut c_char, *mut f64) =
            (0, std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: as rrd_fetch_r takes them; on success it allocates `names` (and each
        // name) and `data`, which are freed below with rrd_freemem.
        let status = unsafe {
            (self.clear)();
            (self.fetch)(
                file.as_ptr(),
                cf.as_ptr(),
                &mut start,
                &mut end,
                &mut step,
                &mut sources,
                &mut names,
                &mut data,
            )
        };
        if status != 0 {
            return Err(self.failure());
        }
        let rows = if step == 0 {
            0
        } else {
            ((end - start) / step as i64).max(0) as usize
        };
        let mut values = Vec::with_capacity(rows);
        // SAFETY: librrd's data holds `rows` rows of `sources` values each.
        unsafe {
            for row in 0..rows {
                if sources == 0 {
                    break;
                }
                let v = *data.add(row * sources as usize);
                values.push((!v.is_nan()).then_some(v));
            }
            for i in 0..sources as usize {
                (self.free)((*names.add(i)).cast());
            }
            (self.free)(names.cast());
            (self.free)(data.cast());
        }
        Ok(Rows {
            start: start.max(0) as u64,
            // `c_ulong` is `u64` here, `u32` on 32-bit targets.
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            step: step as u64,
            values,
        })
    }
}

fn c_path(path: &Path) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL in the file name", path.display()))
}

fn c_strings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| format!("{s:?}: NUL in an argument")))
        .collect()
}
