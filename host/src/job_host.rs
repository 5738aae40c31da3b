//! The host as one job's plugin sees it: where its samples go (keys under the job's name,
//! checked against the key rule), its running counts, its stop flag, `[vars]` and logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RStr, RString};
use spud_plugin_api::ffi::{HostApi, HostApi_TO, HostBox, Level};

use crate::model::Limits;
use crate::plugin_side::{level_number, var, Counts, StopFlag};
use crate::sink::Sink;

/// What every job shares: where samples go and the config's `[vars]` (replaced in place
/// when the config changes: a new value needs no restart).
#[derive(Clone)]
pub struct Context {
    pub sink: Sink,
    pub vars: Arc<parking_lot::RwLock<HashMap<String, String>>>,
    /// What an isolated job's worker may use.
    pub limits: Limits,
}

/// The host as one job's plugin sees it.
pub struct JobHost {
    job: String,
    plugin: String,
    pub ctx: Context,
    counts: Counts,
    pub samples: AtomicU64,
    stop: StopFlag,
}

impl JobHost {
    pub fn new(job: &str, plugin: &str, ctx: Context) -> JobHost {
        JobHost {
            job: job.to_string(),
            plugin: plugin.to_string(),
            ctx,
            counts: Counts::default(),
            samples: AtomicU64::new(0),
            stop: StopFlag::default(),
        }
    }

    /// Tells a service to stop.
    pub fn request_stop(&self) {
        self.stop.request();
    }

    fn full_key(&self, key: &str, absolute: bool) -> String {
        if absolute {
            key.to_string()
        } else {
            format!("{}.{key}", self.job)
        }
    }

    /// A line of the job's plugin (from a worker: 1 error … 5 trace).
    pub(crate) fn log(&self, level: u8, message: &str) {
        let (job, plugin) = (&self.job, &self.plugin);
        match level {
            0 | 1 => tracing::error!(job = %job, plugin = %plugin, "{message}"),
            2 => tracing::warn!(job = %job, plugin = %plugin, "{message}"),
            3 => tracing::info!(job = %job, plugin = %plugin, "{message}"),
            4 => tracing::debug!(job = %job, plugin = %plugin, "{message}"),
            _ => tracing::trace!(job = %job, plugin = %plugin, "{message}"),
        }
    }

    pub(crate) fn store(&self, key: &str, value: &str, time: Option<u64>) {
        if !spud_plugin_api::is_valid_key(key) {
            tracing::warn!(job = %self.job, plugin = %self.plugin, "sample dropped: invalid key {key:?}");
            return;
        }
        if value.contains('\n') {
            tracing::warn!(job = %self.job, plugin = %self.plugin, "sample dropped: the value for {key} has a line break");
            return;
        }
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.ctx
            .sink
            .set(key, value, time.unwrap_or_else(spud_server::unix_now));
    }
}

thread_local! {
    static FULL_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The handle a plugin gets for `host`; the host keeps its own reference.
pub fn handle(host: &Arc<JobHost>) -> HostBox {
    HostApi_TO::from_value(SharedHost(Arc::clone(host)), TD_Opaque)
}

/// The `HostApi` handed across the boundary.
struct SharedHost(Arc<JobHost>);

impl HostApi for SharedHost {
    fn set(&self, key: RStr<'_>, value: RStr<'_>, time: ROption<u64>, absolute: bool) {
        let (value, time) = (value.as_str(), time.into_option());
        if absolute {
            return self.0.store(key.as_str(), value, time);
        }
        // The job's prefix joined in a per-thread buffer: receivers store millions a second.
        FULL_KEY.with(|buf| match buf.try_borrow_mut() {
            Ok(mut full) => {
                full.clear();
                full.push_str(&self.0.job);
                full.push('.');
                full.push_str(key.as_str());
                self.0.store(&full, value, time);
            }
            Err(_) => self
                .0
                .store(&self.0.full_key(key.as_str(), false), value, time),
        });
    }

    fn count(&self, key: RStr<'_>, delta: f64, absolute: bool) {
        let key = self.0.full_key(key.as_str(), absolute);
        let total = self.0.counts.add(&key, delta);
        self.0.store(&key, &total.to_string(), None);
    }

    fn log(&self, level: Level, message: RStr<'_>) {
        self.0.log(level_number(level), message.as_str());
    }

    fn var(&self, name: RStr<'_>) -> ROption<RString> {
        var(&self.0.ctx.vars.read(), name.as_str())
    }

    fn stop_requested(&self, ms: u64) -> bool {
        self.0.stop.wait(ms)
    }
}
