//! What a job can do with the host: store samples, count, log, read `[vars]`.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{RNone, RSome};

use crate::ffi::{HostBox, Level};

thread_local! {
    /// Where a value is written as text before it crosses to the host: one buffer per
    /// thread, so a sample costs no allocation.
    static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `value` as text, handed to `f` without allocating.
fn with_text<R>(value: impl Display, f: impl FnOnce(&str) -> R) -> R {
    use std::fmt::Write as _;
    TEXT.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let _ = write!(buf, "{value}");
            f(&buf)
        }
        // Only if a Display impl itself stores a sample: fall back to a fresh string.
        Err(_) => f(&value.to_string()),
    })
}

/// The host, as a job sees it. Cheap to clone; keys are relative to the job's name unless
/// set with the `_absolute` methods.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostBox>,
}

impl Host {
    #[doc(hidden)]
    pub fn from_ffi(inner: HostBox) -> Host {
        Host {
            inner: Arc::new(inner),
        }
    }

    /// Stores `value` under `<job>.<key>`, timed now.
    pub fn set(&self, key: &str, value: impl Display) {
        with_text(value, |v| {
            self.inner.set(key.into(), v.into(), RNone, false)
        });
    }

    /// Stores `value` under `<job>.<key>` at `time` (Unix seconds).
    pub fn set_at(&self, key: &str, value: impl Display, time: u64) {
        with_text(value, |v| {
            self.inner.set(key.into(), v.into(), RSome(time), false)
        });
    }

    /// Stores `value` under `key` exactly as given.
    pub fn set_absolute(&self, key: &str, value: impl Display) {
        with_text(value, |v| self.inner.set(key.into(), v.into(), RNone, true));
    }

    /// Stores `value` under `key` exactly as given, at `time` (Unix seconds).
    pub fn set_absolute_at(&self, key: &str, value: impl Display, time: u64) {
        with_text(value, |v| {
            self.inner.set(key.into(), v.into(), RSome(time), true)
        });
    }

    /// Adds `delta` to the counter `<job>.<key>` (kept by the host; starts at 0).
    pub fn count(&self, key: &str, delta: f64) {
        self.inner.count(key.into(), delta, false);
    }

    /// A value from the config's `[vars]` (the original's `get_var`).
    pub fn var(&self, name: &str) -> Option<String> {
        self.inner.var(name.into()).into_option().map(Into::into)
    }

    /// Logs at `level` under the job's name, in the host's log.
    pub fn log(&self, level: Level, message: impl Display) {
        self.inner.log(level, message.to_string().as_str().into());
    }

    /// Logs an error.
    pub fn error(&self, message: impl Display) {
        self.log(Level::Error, message);
    }

    /// Logs a warning.
    pub fn warn(&self, message: impl Display) {
        self.log(Level::Warn, message);
    }

    /// Logs information.
    pub fn info(&self, message: impl Display) {
        self.log(Level::Info, message);
    }

    /// Logs detail for debugging.
    pub fn debug(&self, message: impl Display) {
        self.log(Level::Debug, message);
    }

    /// For services: waits up to `wait`, returning true as soon as the host asks the job to
    /// stop. A service loop is `while !host.stop_requested(interval) { ... }`.
    pub fn stop_requested(&self, wait: Duration) -> bool {
        self.inner.stop_requested(wait.as_millis() as u64)
    }
}
