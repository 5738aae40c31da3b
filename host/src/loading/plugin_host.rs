//! The `Host` a plugin sees, one implementation for a job in this process and for one in a
//! worker process: keys under the job's name, running counts (`count`), `[vars]`, the stop
//! flag a service polls, and log levels. The two differ only in where samples and log lines
//! go and where vars and the stop flag live: an [`Outlet`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RNone, ROption, RSome, RStr, RString};
use parking_lot::{Condvar, Mutex, RwLock};
use spud_plugin_api::ffi::{HostApi, HostApi_TO, HostBox, Level};

/// Where one job's samples and log lines go, with its vars and stop flag.
pub trait Outlet: Send + Sync + 'static {
    /// A sample under its full key (not yet checked).
    fn set(&self, key: &str, value: &str, time: Option<u64>);
    /// A line of the plugin's: 1 error … 5 trace.
    fn log(&self, level: u8, message: &str);
    /// The config's `[vars]`, as the job sees them now.
    fn vars(&self) -> &RwLock<HashMap<String, String>>;
    /// Set when the job must stop.
    fn stop(&self) -> &StopFlag;
}

/// The handle a plugin gets for job `job`, whose samples go to `outlet`.
pub fn handle<O: Outlet>(job: &str, outlet: Arc<O>) -> HostBox {
    let host = PluginHost {
        job: job.to_string(),
        counts: Counts::default(),
        outlet,
    };
    HostApi_TO::from_value(host, TD_Opaque)
}

/// The `HostApi` handed across the boundary.
struct PluginHost<O> {
    job: String,
    counts: Counts,
    outlet: Arc<O>,
}

thread_local! {
    static FULL_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<O> PluginHost<O> {
    fn full_key(&self, key: &str, absolute: bool) -> String {
        if absolute {
            key.to_string()
        } else {
            format!("{}.{key}", self.job)
        }
    }
}

impl<O: Outlet> HostApi for PluginHost<O> {
    fn set(&self, key: RStr<'_>, value: RStr<'_>, time: ROption<u64>, absolute: bool) {
        let (value, time) = (value.as_str(), time.into_option());
        if absolute {
            return self.outlet.set(key.as_str(), value, time);
        }
        // The job's prefix joined in a per-thread buffer: receivers store millions a second.
        FULL_KEY.with(|buf| match buf.try_borrow_mut() {
            Ok(mut full) => {
                full.clear();
                full.push_str(&self.job);
                full.push('.');
                full.push_str(key.as_str());
                self.outlet.set(&full, value, time);
            }
            Err(_) => self
                .outlet
                .set(&self.full_key(key.as_str(), false), value, time),
        });
    }

    fn count(&self, key: RStr<'_>, delta: f64, absolute: bool) {
        let key = self.full_key(key.as_str(), absolute);
        let total = self.counts.add(&key, delta);
        self.outlet.set(&key, &total.to_string(), None);
    }

    fn log(&self, level: Level, message: RStr<'_>) {
        self.outlet.log(level_number(level), message.as_str());
    }

    fn var(&self, name: RStr<'_>) -> ROption<RString> {
        match self.outlet.vars().read().get(name.as_str()) {
            Some(v) => RSome(v.as_str().into()),
            None => RNone,
        }
    }

    fn stop_requested(&self, ms: u64) -> bool {
        self.outlet.stop().wait(ms)
    }
}

/// Running totals of `count`, by full key.
#[derive(Default)]
struct Counts(Mutex<HashMap<String, f64>>);

impl Counts {
    /// Adds `delta` to `key`'s total and returns the new total.
    fn add(&self, key: &str, delta: f64) -> f64 {
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

/// A log level as a number (1 error … 5 trace), as it crosses the worker's socket.
fn level_number(level: Level) -> u8 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}
