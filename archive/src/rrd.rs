//! librrd, the library behind `rrdtool`, loaded when an archive opens rather than linked:
//! the binaries build and run without it, and only archiving needs Debian's `librrd8`.
//! Only the thread-safe `_r` entry points are used; librrd keeps its error text per thread.

use std::ffi::{c_char, c_int, c_ulong, CStr, CString};
use std::path::Path;

use libloading::{Library, Symbol};

type CreateFn =
    unsafe extern "C" fn(*const c_char, c_ulong, i64, c_int, *const *const c_char) -> c_int;
type UpdateFn =
    unsafe extern "C" fn(*const c_char, *const c_char, c_int, *const *const c_char) -> c_int;
type LastFn = unsafe extern "C" fn(*const c_char) -> i64;
type ErrorFn = unsafe extern "C" fn() -> *const c_char;
type ClearFn = unsafe extern "C" fn();

/// The sonames tried, newest first.
const SONAMES: [&str; 2] = ["librrd.so.8", "librrd.so"];

pub struct Librrd {
    create: CreateFn,
    update: UpdateFn,
    last: LastFn,
    error: ErrorFn,
    clear: ClearFn,
    /// Keeps the functions above mapped.
    _lib: Library,
}

impl Librrd {
    pub fn open() -> Result<Librrd, String> {
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
        // SAFETY: the types are those of rrd.h in rrdtool 1.4 to 1.9, where these five
        // functions have kept their signatures.
        unsafe {
            let create: Symbol<CreateFn> = lib.get(b"rrd_create_r\0")?;
            let update: Symbol<UpdateFn> = lib.get(b"rrd_update_r\0")?;
            let last: Symbol<LastFn> = lib.get(b"rrd_last_r\0")?;
            let error: Symbol<ErrorFn> = lib.get(b"rrd_get_error\0")?;
            let clear: Symbol<ClearFn> = lib.get(b"rrd_clear_error\0")?;
            Ok(Librrd {
                create: *create,
                update: *update,
                last: *last,
                error: *error,
                clear: *clear,
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
