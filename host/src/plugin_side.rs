//! What the `Host` a plugin sees does the same way in the host's process and in a worker:
//! running counts (`count`), the stop flag a service polls, `[vars]` lookups and log levels.

use std::collections::HashMap;
use std::time::Duration;

use abi_stable::std_types::{RNone, ROption, RSome, RString};
use parking_lot::{Condvar, Mutex};
use spud_plugin_api::ffi::Level;

/// Running totals of `count`, by full key.
#[derive(Default)]
pub struct Counts(Mutex<HashMap<String, f64>>);

impl Counts {
    /// Adds `delta` to `key`'s total and returns the new total.
    pub fn add(&self, key: &str, delta: f64) -> f64 {
        let mut totals = self.0.lock();
        let total = totals.entry(key.to_string()).or_insert(0.0);
        *total += delta;
        *total
    }
}

/// Set once when the job must stop; services wait on it.
#[derive(Default)]
pub struct StopFlag {
    stop: Mutex<bool>,
    changed: Condvar,
}

impl StopFlag {
    pub fn request(&self) {
        *self.stop.lock() = true;
        self.changed.notify_all();
    }

    /// Whether a stop was requested, waiting up to `ms` for one.
    pub fn wait(&self, ms: u64) -> bool {
        let mut stop = self.stop.lock();
        if !*stop && ms > 0 {
            self.changed.wait_for(&mut stop, Duration::from_millis(ms));
        }
        *stop
    }
}

/// A var, as the plugin API hands it over.
pub fn var(vars: &HashMap<String, String>, name: &str) -> ROption<RString> {
    match vars.get(name) {
        Some(v) => RSome(v.as_str().into()),
        None => RNone,
    }
}

/// A log level as a number (1 error … 5 trace), as it crosses the worker's socket.
pub fn level_number(level: Level) -> u8 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}
